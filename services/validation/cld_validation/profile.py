"""The central DQ report's profile of a file: per field and event type, status x validity counts (passes
included), completeness, and the invalid/unchecked values of non-personal coded fields. Pure, no I/O.

Counting is cheap: a row adds a few keys (its event type, its status plan, and the validities of a block of
fields as a tuple of object ids, never a Finding per passing cell) to a counter; the counts per field are derived
only when the profile is read (``_fold``). Blocks of fields keep the number of distinct keys small even when
rows differ a lot; when a file still has very many, the counter is folded early, so memory stays bounded.

Personal fields (the spec's PII flag) never show values: their value lists read 'N/A - PID'.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cld_schemas.spec import FieldStatus, SpecField, Validity

PID: Final = "N/A - PID"
ALL_EVENTS: Final = "All event types"
BLANK_EVENT: Final = "(blank)"
OTHER_EVENT: Final = "(not a defined Event Type)"
NO_START_MONTH: Final = "(no valid Event Start Date)"
MAX_VALUES_PER_FIELD: Final = 500
"""Distinct invalid/unchecked values kept per field; the rest are counted together."""
_FOLD_AT: Final = 20_000

_VALIDITIES: Final = tuple(Validity)
_STATUSES: Final = tuple(FieldStatus)
_VALIDITY_BY_ID: Final = {id(v): v for v in _VALIDITIES}
_BLOCK: Final = 25
"""Fields per counting block."""
_BLANK: Final = frozenset({Validity.BLANK_MANDATORY, Validity.BLANK_NOT_MANDATORY})


@dataclass
class _FieldCounts:
    cells: Counter[tuple[FieldStatus, Validity]] = field(default_factory=Counter)


@dataclass
class Profile:
    """Accumulates the profile of one file; ``add`` once per row."""

    fields: Sequence[SpecField]
    defined_event_types: frozenset[str]
    _combos: Counter[tuple[str, int, int, tuple[int, ...]]] = field(default_factory=Counter)
    _plans: dict[int, tuple[FieldStatus, ...]] = field(default_factory=dict)
    _folded: dict[str, list[Counter[tuple[FieldStatus, Validity]]]] = field(default_factory=dict)
    rows_by_event: Counter[str] = field(default_factory=Counter)
    unchecked_cells: dict[str, Counter[str]] = field(default_factory=dict)
    values: dict[str, Counter[str]] = field(default_factory=dict)
    """Invalid and unchecked values of non-personal coded fields, by field name."""
    other_values: Counter[str] = field(default_factory=Counter)
    failures_by_month: Counter[str] = field(default_factory=Counter)
    rows_failed_by_month: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._coded_public = frozenset(f.name for f in self.fields if f.format == "code" and not f.pii)
        n = len(self.fields)
        self._blocks = tuple((b, a, min(a + _BLOCK, n)) for b, a in enumerate(range(0, n, _BLOCK)))

    def event_label(self, value: str | None) -> str:
        if not value:
            return BLANK_EVENT
        return value if value in self.defined_event_types else OTHER_EVENT

    def add(
        self,
        event: str,
        plan_statuses: tuple[FieldStatus, ...],
        validities: Sequence[Validity],
        unchecked: Sequence[str],
    ) -> None:
        pid = id(plan_statuses)
        if pid not in self._plans:
            self._plans[pid] = plan_statuses  # held, so the id stays that tuple's
        ids = tuple(map(id, validities))
        combos = self._combos
        for b, lo, hi in self._blocks:
            combos[(event, pid, b, ids[lo:hi])] += 1
        self.rows_by_event[event] += 1
        if unchecked:
            cu = self.unchecked_cells.get(event)
            if cu is None:
                cu = self.unchecked_cells[event] = Counter()
            cu.update(unchecked)
        if len(self._combos) > _FOLD_AT:
            self._fold()

    def add_value(self, name: str, value: str) -> None:
        """An invalid or unchecked value of a field: kept only for non-personal coded fields."""
        c = self.values.get(name)
        if c is None:
            if name not in self._coded_public:
                return
            c = self.values[name] = Counter()
        if value in c or len(c) < MAX_VALUES_PER_FIELD:
            c[value] += 1
        else:
            self.other_values[name] += 1

    def add_failed_row(self, start_month: str | None, failures: int) -> None:
        month = start_month or NO_START_MONTH
        self.failures_by_month[month] += failures
        self.rows_failed_by_month[month] += 1

    def _fold(self) -> None:
        n_fields = len(self.fields)
        by_id = _VALIDITY_BY_ID
        for (event, pid, b, vkey), n in self._combos.items():
            statuses = self._plans[pid]
            per = self._folded.get(event)
            if per is None:
                per = self._folded[event] = [Counter() for _ in range(n_fields)]
            lo = b * _BLOCK
            for j, vid in enumerate(vkey):
                per[lo + j][(statuses[lo + j], by_id[vid])] += n
        self._combos.clear()
        self._plans.clear()

    def cells(self) -> dict[str, list[Counter[tuple[FieldStatus, Validity]]]]:
        """Per event type, per field (in ``fields`` order): counts of (status, validity)."""
        self._fold()
        return {event: [Counter(c) for c in per] for event, per in self._folded.items()}

    def to_json(self) -> dict[str, Any]:
        cells = self.cells()
        events = sorted(cells, key=lambda e: (-self.rows_by_event[e], e))
        all_cells: list[Counter[tuple[FieldStatus, Validity]]] = [Counter() for _ in self.fields]
        for per in cells.values():
            for i, c in enumerate(per):
                all_cells[i].update(c)
        fields_out: list[dict[str, Any]] = []
        for i, f in enumerate(self.fields):
            by_event = {ALL_EVENTS: _cell_summary(all_cells[i], self._unchecked(f.name, None))}
            for e in events:
                by_event[e] = _cell_summary(cells[e][i], self._unchecked(f.name, e))
            item: dict[str, Any] = {"field": f.header, "personal": f.pii, "by_event_type": by_event}
            if f.pii:
                item["invalid_and_unchecked_values"] = PID
            elif f.format == "code":
                vals = self.values.get(f.name, Counter())
                item["invalid_and_unchecked_values"] = dict(vals.most_common())
                if self.other_values[f.name]:
                    item["other_values_not_listed"] = self.other_values[f.name]
            fields_out.append(item)
        return {
            "rows_by_event_type": dict(self.rows_by_event.most_common()),
            "fields": fields_out,
            "failures_by_event_start_month": dict(sorted(self.failures_by_month.items())),
            "rows_with_failures_by_event_start_month": dict(sorted(self.rows_failed_by_month.items())),
        }

    def _unchecked(self, name: str, event: str | None) -> int:
        if event is not None:
            return self.unchecked_cells.get(event, Counter())[name]
        return sum(c[name] for c in self.unchecked_cells.values())


def _cell_summary(c: Mapping[tuple[FieldStatus, Validity], int], unchecked: int) -> dict[str, Any]:
    total = sum(c.values())
    status = dict.fromkeys((s.value for s in _STATUSES), 0)
    validity = dict.fromkeys((v.value for v in _VALIDITIES), 0)
    blank = 0
    for (s, v), n in c.items():
        status[s.value] += n
        validity[v.value] += n
        if v in _BLANK:
            blank += n
    return {
        "rows": total,
        "status": status,
        "validity": validity,
        "status_by_validity": [
            {"status": s.value, "validity": v.value, "count": n}
            for (s, v), n in sorted(c.items(), key=lambda kv: (_STATUSES.index(kv[0][0]), _VALIDITIES.index(kv[0][1])))
        ],
        "completeness_percent": round(100.0 * (total - blank) / total, 1) if total else None,
        "unchecked": unchecked,
    }
