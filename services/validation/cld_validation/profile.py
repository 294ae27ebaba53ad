"""The central DQ report's profile of a file: per field and event type, status x validity counts (passes
included), completeness, and the invalid/unchecked values of non-personal coded fields. Pure, no I/O.

Counting is cheap, never a Finding per passing cell: a cell's validity follows from its status and whether it is
blank, unless the cell failed. So per (event type, status plan) the profile counts rows and, per field, non-blank
cells (one C-level ``Counter.update`` over the sparse record's keys per row). Rows with failures also record a
correction per failed non-blank cell (``Passed: Valid`` -1, its validity +1). Memory is bounded by the number of
event types x status plans x fields, whatever the number of rows; the counts per field and validity are derived
only when the profile is read (``cells``).

Personal fields (the spec's PII flag) never show values: their value lists read 'N/A - PID'.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Final

from cld_schemas.dqreport import ALL_EVENTS as ALL_EVENTS  # re-exported: one definition, shared
from cld_schemas.dqreport import NO_START_MONTH as NO_START_MONTH
from cld_schemas.dqreport import PID as PID
from cld_schemas.spec import FieldStatus, SpecField, Validity

BLANK_EVENT: Final = "(blank)"
OTHER_EVENT: Final = "(not a defined Event Type)"
MAX_VALUES_PER_FIELD: Final = 500
"""Distinct invalid/unchecked values kept per field; the rest are counted together."""
_TRIM_AT: Final = 50_000

_VALIDITIES: Final = tuple(Validity)
_STATUSES: Final = tuple(FieldStatus)

_BLANK: Final = frozenset({Validity.BLANK_MANDATORY, Validity.BLANK_NOT_MANDATORY})


@dataclass
class Profile:
    """Accumulates the profile of one file; ``add`` once per row."""

    fields: Sequence[SpecField]
    defined_event_types: frozenset[str]
    _rows: Counter[tuple[str, int]] = field(default_factory=Counter)
    _present: dict[tuple[str, int], Counter[str]] = field(default_factory=dict)
    _corrections: Counter[tuple[str, int, FieldStatus, Validity]] = field(default_factory=Counter)
    _plans: dict[int, tuple[FieldStatus, ...]] = field(default_factory=dict)
    rows_by_event: Counter[str] = field(default_factory=Counter)
    _values: Counter[tuple[str, str, str | None]] = field(default_factory=Counter)
    """(event type, field name, value) of unchecked cells, and ('', field name, value) of invalid coded values.
    ``_trim`` keeps only non-personal coded fields' values (their counts move to ``_unchecked_dropped``)."""
    _unchecked_dropped: Counter[tuple[str, str]] = field(default_factory=Counter)
    other_values: Counter[str] = field(default_factory=Counter)
    failures_by_month: Counter[str] = field(default_factory=Counter)
    rows_failed_by_month: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._coded_public = frozenset(f.name for f in self.fields if f.format == "code" and not f.pii)
        self._index = {f.name: i for i, f in enumerate(self.fields)}

    def event_label(self, value: str | None) -> str:
        if not value:
            return BLANK_EVENT
        return value if value in self.defined_event_types else OTHER_EVENT

    def add(
        self,
        event: str,
        plan_statuses: tuple[FieldStatus, ...],
        rec: Mapping[str, str | None],
        unchecked: Sequence[str],
        failed: Sequence[tuple[str, Validity]] = (),
    ) -> None:
        """One row: its event type label, status plan (``RowResult.plan_statuses``), its *sparse* record (only
        non-blank fields as keys, as ``iter_records(sparse=True)`` yields), the names of its unchecked fields, and
        (field name, validity) of each failed field. Per-cell work is C-level counting, not Python loops."""
        pid = id(plan_statuses)
        if pid not in self._plans:
            self._plans[pid] = plan_statuses  # held, so the id stays that tuple's
        key = (event, pid)
        self._rows[key] += 1
        present = self._present.get(key)
        if present is None:
            present = self._present[key] = Counter()
        present.update(iter(rec))  # keys only: the sparse record's non-blank fields
        self.rows_by_event[event] += 1
        if failed:
            corr = self._corrections
            index = self._index
            for name, validity in failed:
                if rec.get(name):  # a blank failure is already the plan's own blank validity
                    i = index[name]
                    corr[(event, i, plan_statuses[i], Validity.VALID)] -= 1
                    corr[(event, i, plan_statuses[i], validity)] += 1
        if unchecked:
            self._values.update(zip(repeat(event), unchecked, map(rec.get, unchecked)))
            if len(self._values) > _TRIM_AT:
                self._trim()

    def add_rows(
        self, event: str, plan_statuses: tuple[FieldStatus, ...], rows: int, present: Mapping[str, int]
    ) -> None:
        """``rows`` rows of one event type and status plan at once (the columnar engine's group-by): ``present``
        counts their non-blank cells per field name. The same counts as ``add`` once per row."""
        pid = id(plan_statuses)
        if pid not in self._plans:
            self._plans[pid] = plan_statuses
        key = (event, pid)
        self._rows[key] += rows
        counts = self._present.get(key)
        if counts is None:
            counts = self._present[key] = Counter()
        counts.update(present)
        self.rows_by_event[event] += rows

    def add_failed_cells(self, cells: Sequence[tuple[str, int, FieldStatus, Validity, int]]) -> None:
        """Failed non-blank cells, counted: (event type, field index, plan status, validity, count)."""
        corr = self._corrections
        for event, i, status, validity, n in cells:
            corr[(event, i, status, Validity.VALID)] -= n
            corr[(event, i, status, validity)] += n

    def add_values(self, items: Sequence[tuple[str, str, str, int]]) -> None:
        """(event type, field name, value, count) of unchecked cells, and ('', field name, value, count) of invalid
        coded values, in the order their first cell appears in the file (ties in the value lists keep it)."""
        coded_public = self._coded_public
        values = self._values
        for event, name, value, n in items:
            if event or name in coded_public:
                values[(event, name, value)] += n
        if len(values) > _TRIM_AT:
            self._trim()

    def add_value(self, name: str, value: str) -> None:
        """An invalid value of a field (kept only for non-personal coded fields)."""
        if name in self._coded_public:
            self._values[("", name, value)] += 1
            if len(self._values) > _TRIM_AT:
                self._trim()

    def _trim(self) -> None:
        """Keep values of non-personal coded fields only, at most MAX_VALUES_PER_FIELD per field (the most
        frequent); the rest are counted per field in ``other_values``. Unchecked counts are kept either way."""
        totals: Counter[tuple[str, str | None]] = Counter()
        for (_e, name, value), n in self._values.items():
            if name in self._coded_public:
                totals[(name, value)] += n
        by_name: dict[str, list[tuple[int, str | None]]] = {}
        for (name, value), n in totals.items():
            by_name.setdefault(name, []).append((n, value))
        keep: set[tuple[str, str | None]] = set()
        for name, items in by_name.items():
            items.sort(key=lambda nv: -nv[0])
            keep.update((name, v) for _, v in items[:MAX_VALUES_PER_FIELD])
        kept: Counter[tuple[str, str, str | None]] = Counter()
        for (e, name, value), n in self._values.items():
            if (name, value) in keep:
                kept[(e, name, value)] = n
                continue
            if e:
                self._unchecked_dropped[(e, name)] += n
            if name in self._coded_public:
                self.other_values[name] += n
        self._values = kept

    def _derived(self) -> tuple[dict[str, Counter[str]], Counter[tuple[str, str]]]:
        """(values by field name, unchecked cells by (event type, field name))."""
        self._trim()
        values: dict[str, Counter[str]] = {}
        unchecked: Counter[tuple[str, str]] = Counter(self._unchecked_dropped)
        for (e, name, value), n in self._values.items():
            if value:
                values.setdefault(name, Counter())[value] += n
            if e:
                unchecked[(e, name)] += n
        return values, unchecked

    @property
    def values(self) -> dict[str, Counter[str]]:
        """Invalid and unchecked values of non-personal coded fields, by field name."""
        return self._derived()[0]

    def add_failed_row(self, start_month: str | None, failures: int) -> None:
        month = start_month or NO_START_MONTH
        self.failures_by_month[month] += failures
        self.rows_failed_by_month[month] += 1

    def cells(self) -> dict[str, list[Counter[tuple[FieldStatus, Validity]]]]:
        """Per event type, per field (in ``fields`` order): counts of (status, validity)."""
        names = [f.name for f in self.fields]
        valid, blank_m, blank_n = Validity.VALID, Validity.BLANK_MANDATORY, Validity.BLANK_NOT_MANDATORY
        mandatory = FieldStatus.MANDATORY
        out: dict[str, list[Counter[tuple[FieldStatus, Validity]]]] = {}

        def per_event(event: str) -> list[Counter[tuple[FieldStatus, Validity]]]:
            per = out.get(event)
            if per is None:
                per = out[event] = [Counter() for _ in names]
            return per

        for (event, pid), rows in self._rows.items():
            statuses = self._plans[pid]
            present = self._present[(event, pid)]
            per = per_event(event)
            for i, name in enumerate(names):
                st = statuses[i]
                filled = present[name]
                if filled:
                    per[i][(st, valid)] += filled
                if rows - filled:
                    per[i][(st, blank_m if st is mandatory else blank_n)] += rows - filled
        for (event, i, st, v), n in self._corrections.items():
            per_event(event)[i][(st, v)] += n
        return {event: [Counter({k: n for k, n in c.items() if n}) for c in per] for event, per in out.items()}

    def to_json(self) -> dict[str, Any]:
        cells = self.cells()
        events = sorted(cells, key=lambda e: (-self.rows_by_event[e], e))
        all_cells: list[Counter[tuple[FieldStatus, Validity]]] = [Counter() for _ in self.fields]
        for per in cells.values():
            for i, c in enumerate(per):
                all_cells[i].update(c)
        values, unchecked = self._derived()
        fields_out: list[dict[str, Any]] = []
        for i, f in enumerate(self.fields):
            total_unchecked = sum(unchecked[(e, f.name)] for e in events)
            by_event = {ALL_EVENTS: _cell_summary(all_cells[i], total_unchecked)}
            for e in events:
                by_event[e] = _cell_summary(cells[e][i], unchecked[(e, f.name)])
            item: dict[str, Any] = {"field": f.header, "personal": f.pii, "by_event_type": by_event}
            if f.pii:
                item["invalid_and_unchecked_values"] = PID
            elif f.format == "code":
                vals = values.get(f.name, Counter())
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
