"""Dataset-level checks before sending, in the terms of the DQ report LAs get back. Pure, single pass.

Record-level findings say whether a value is valid; these checks look across rows of one submission file and
across submissions. Every check has a stable id, a severity, a one-line explanation citing its rule, and
counts. Examples are data row numbers of the file (row 1 is the first line after the header) or record
keys (keyed hashes): never a value from a record.

Checks never remove rows: a submission is a complete snapshot and invalid values are reported, not dropped.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

from pydantic import BaseModel, ConfigDict, Field

from .identity import Kind, code_key
from .scope import REASONS, LeftOutReason, left_out_reason

if TYPE_CHECKING:  # the checks need no database: the CLI runs them on a file without loading the state module
    from .records import HeldOut

MAX_EXAMPLES: Final = 10
SMALL_FILE_EVENTS: Final = 100
"""R-SUB-3: files with fewer events keep their stated dates."""
MONTH_SHARE: Final = 0.02
"""R-SUB-3: months with under 2% of the file's events are dropped from the derived period."""


class CheckedRecord(Protocol):
    """What the dataset checks read of a record (``state.StoredRecord`` has it; so does ``file_checks``' row)."""

    @property
    def kind(self) -> Kind: ...
    @property
    def event_type(self) -> str | None: ...
    @property
    def person_key(self) -> str | None: ...
    @property
    def derived_end(self) -> date | None: ...
    @property
    def record(self) -> dict[str, str | None]: ...
    @property
    def findings(self) -> tuple[tuple[str, str, str], ...]: ...
    @property
    def failed(self) -> bool: ...
    @property
    def opt_out(self) -> bool: ...


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class CheckResult(BaseModel):
    """One dataset check that found something (or an informative count)."""

    model_config = ConfigDict(frozen=True)

    id: str
    severity: Severity
    explanation: str = Field(description="One line, citing the rule; never personal data.")
    rule: str
    count: int
    details: dict[str, int | str] = Field(default_factory=dict)
    examples: tuple[str, ...] = Field(default=(), description="Row numbers or record keys, never values.")


class PartialThresholds(BaseModel):
    """When a file looks partial or like a top-up compared with the previous submission (R-SUB-7)."""

    model_config = ConfigDict(frozen=True)

    rows_drop: float = Field(default=0.20, ge=0, le=1, description="rows down by more than this share")
    people_drop: float = Field(default=0.20, ge=0, le=1, description="people down by more than this share")
    months_drop: int = Field(default=1, ge=0, description="more than this many fewer months with events")


class SubmissionProfile(BaseModel):
    """The shape of one submission file, kept to compare the next one with."""

    model_config = ConfigDict(frozen=True)

    rows: int
    people: int
    event_types: dict[str, int]
    months: list[str] = Field(description="yyyy-mm months with events ending in them (derived end)")
    derived_period_start: date | None = None
    derived_period_end: date | None = None


class FindingCount(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    rule: str
    validity: str
    records: int


def _h(*parts: str) -> bytes:
    """A compact in-memory key (16 bytes): sets of these stay small at 500k rows."""
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=16).digest()


def _v(rec: dict[str, str | None], name: str) -> str:
    value = rec.get(name)
    return value.strip() if value else ""


def unique_event_key(r: CheckedRecord) -> bytes | None:
    """DHSC's unique event for a single submission (R-DUP-1): raw values except the derived end date.

    LA code is implied (one LA per file); person = R-ID-1 person key; services add type, component,
    delivery mechanism and the cost fields; Event Reference is not used.
    """
    if r.kind in (Kind.CARER_BY_ASSOCIATION, Kind.UNDETERMINED) or r.event_type is None:
        return None
    rec = r.record
    parts = [
        r.person_key or "",
        r.event_type,
        _v(rec, "event_start_date"),
        _v(rec, "client_type"),
    ]
    if r.event_type != "service":
        parts.append(r.derived_end.isoformat() if r.derived_end else "")
    if r.event_type == "request":
        parts.append(_v(rec, "request_route_of_access"))
    elif r.event_type == "assessment":
        parts.append(_v(rec, "assessment_type"))
    elif r.event_type == "service":
        parts += [
            _v(rec, n)
            for n in (
                "service_type",
                "service_component",
                "delivery_mechanism",
                "unit_cost",
                "cost_frequency_unit_type",
                "planned_units_per_week",
            )
        ]
    return _h(*parts)


def _event_identity(r: CheckedRecord) -> bytes:
    """What makes two rows the same event regardless of their reference (for reference reuse)."""
    rec = r.record
    return _h(r.person_key or "", r.event_type or _v(rec, "event_type"), _v(rec, "event_start_date"))


def _month(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def _month_end(year: int, month: int) -> date:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def derive_period(
    month_events: dict[str, int],
    month_types: dict[str, set[str]],
    *,
    stated_start: date,
    stated_end: date,
    import_date: date,
) -> tuple[date, date, list[str]]:
    """R-SUB-3: the period DHSC would derive, and the months it would keep.

    Events are counted by the month of their (derived) end date; months in or after the import month are
    ignored; months with under 2% of the events, or with fewer than (most event types in a month - 1) event
    types, are dropped; the period runs from the first kept month's start to the last kept month's end.
    Files with under 100 such events keep their stated dates.
    """
    import_month = _month(import_date)
    months = {m: n for m, n in month_events.items() if m < import_month}
    total = sum(months.values())
    if total < SMALL_FILE_EVENTS:
        return stated_start, stated_end, sorted(months)
    max_types = max((len(month_types.get(m, ())) for m in months), default=0)
    kept = sorted(
        m for m, n in months.items() if n >= MONTH_SHARE * total and len(month_types.get(m, ())) >= max_types - 1
    )
    if not kept:
        return stated_start, stated_end, []
    first_y, first_m = (int(x) for x in kept[0].split("-"))
    last_y, last_m = (int(x) for x in kept[-1].split("-"))
    return date(first_y, first_m, 1), _month_end(last_y, last_m), kept


@dataclass
class DatasetChecker:
    """Feed every row of the file in order (``add``), then ``finish``. Memory: a few small keys per row."""

    period_start: date
    period_end: date
    import_date: date
    rows: int = 0
    _dup_first: dict[bytes, int] = field(default_factory=dict)
    _dup_rows: list[int] = field(default_factory=list)
    _dup_groups: set[bytes] = field(default_factory=set)
    _dup_extra: int = 0
    _person: dict[str, tuple[bytes, bytes, int]] = field(default_factory=dict)
    _person_conflicts: dict[str, set[str]] = field(default_factory=dict)
    _person_rows: list[int] = field(default_factory=list)
    _ref: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)
    _ref_reused: set[bytes] = field(default_factory=set)
    _ref_rows: list[int] = field(default_factory=list)
    _month_events: Counter[str] = field(default_factory=Counter)
    _month_types: dict[str, set[str]] = field(default_factory=dict)
    _event_types: Counter[str] = field(default_factory=Counter)
    _undetermined: list[int] = field(default_factory=list)
    _undetermined_count: int = 0
    _opt_out: int = 0
    _failed_rows: int = 0
    _findings: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, r: CheckedRecord, *, row: int | None = None) -> None:
        """``row``: the row number examples name (default: the count of rows added, 1 = the first)."""
        self.rows += 1
        row = self.rows if row is None else row
        rec = r.record
        if r.failed or r.findings:
            self._failed_rows += 1
        for f in r.findings:
            self._findings[f] += 1
        if r.opt_out:
            self._opt_out += 1
        if r.kind is Kind.UNDETERMINED:
            self._undetermined_count += 1
            if len(self._undetermined) < MAX_EXAMPLES:
                self._undetermined.append(row)
        self._event_types[
            r.event_type or ("carer_by_association" if r.kind is Kind.CARER_BY_ASSOCIATION else "unknown")
        ] += 1

        key = unique_event_key(r)
        if key is not None:
            first = self._dup_first.setdefault(key, row)
            if first != row:
                self._dup_groups.add(key)
                self._dup_extra += 1
                if len(self._dup_rows) < MAX_EXAMPLES:
                    self._dup_rows.append(row)

        if r.person_key is not None:
            dob = _h(_v(rec, "date_of_birth"))
            gender = _h(code_key("gender", rec.get("gender")) or _v(rec, "gender").casefold())
            seen = self._person.get(r.person_key)
            if seen is None:
                self._person[r.person_key] = (dob, gender, row)
            else:
                what = set()
                if seen[0] != dob:
                    what.add("date_of_birth")
                if seen[1] != gender:
                    what.add("gender")
                if what:
                    self._person_conflicts.setdefault(r.person_key, set()).update(what)
                    if len(self._person_rows) < MAX_EXAMPLES:
                        self._person_rows.append(row)

        ref = _v(rec, "event_reference")
        if ref and r.kind is not Kind.CARER_BY_ASSOCIATION:
            ref_key = _h(ref)
            ident = _event_identity(r)
            seen_ref = self._ref.get(ref_key)
            if seen_ref is None:
                self._ref[ref_key] = (ident, row)
            elif seen_ref[0] != ident:
                self._ref_reused.add(ref_key)
                if len(self._ref_rows) < MAX_EXAMPLES:
                    self._ref_rows.append(row)

        if r.event_type is not None and r.derived_end is not None:
            m = _month(r.derived_end)
            self._month_events[m] += 1
            self._month_types.setdefault(m, set()).add(r.event_type)

    # -- results ----------------------------------------------------------------------------------------

    def record_findings(self) -> list[FindingCount]:
        """Record-level failures by field and rule, most frequent first."""
        return [
            FindingCount(field=f, rule=rule, validity=validity, records=n)
            for (f, rule, validity), n in sorted(self._findings.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def profile(self) -> SubmissionProfile:
        start, end, _kept = self.derived()
        return SubmissionProfile(
            rows=self.rows,
            people=len(self._person),
            event_types=dict(sorted(self._event_types.items())),
            months=sorted(self._month_events),
            derived_period_start=start,
            derived_period_end=end,
        )

    def derived(self) -> tuple[date, date, list[str]]:
        return derive_period(
            dict(self._month_events),
            self._month_types,
            stated_start=self.period_start,
            stated_end=self.period_end,
            import_date=self.import_date,
        )

    def finish(self) -> list[CheckResult]:
        out: list[CheckResult] = []
        if self.rows == 0:
            out.append(
                CheckResult(
                    id="DS-EMPTY",
                    severity=Severity.ERROR,
                    explanation="No in-scope records for this LA and period: an empty file would replace the "
                    "LA's figures with nothing (a file is a complete snapshot).",
                    rule="R-SUB-7",
                    count=0,
                )
            )
        if self._dup_groups:
            out.append(
                CheckResult(
                    id="DS-DUP-EVENT",
                    severity=Severity.WARNING,
                    explanation="Rows share DHSC's unique-event key (person, start, end, client type and the "
                    "event type's own fields); DHSC keeps one row per event.",
                    rule="R-DUP-1",
                    count=len(self._dup_groups),
                    details={"extra_rows": self._dup_extra},
                    examples=tuple(str(r) for r in self._dup_rows),
                )
            )
        if self._person_conflicts:
            dob = sum(1 for w in self._person_conflicts.values() if "date_of_birth" in w)
            gender = sum(1 for w in self._person_conflicts.values() if "gender" in w)
            out.append(
                CheckResult(
                    id="DS-PERSON-CONFLICT",
                    severity=Severity.WARNING,
                    explanation="One person has different dates of birth or genders across rows; central "
                    "processing then guesses or sets 'Unknown'.",
                    rule="R-DUP-5",
                    count=len(self._person_conflicts),
                    details={"date_of_birth": dob, "gender": gender},
                    examples=tuple(str(r) for r in self._person_rows),
                )
            )
        if self._ref_reused:
            out.append(
                CheckResult(
                    id="DS-EVENT-REF-REUSED",
                    severity=Severity.WARNING,
                    explanation="An Event Reference is used for different events (person, type or start "
                    "differ); a reference must be unique per event.",
                    rule="R-FLD-23",
                    count=len(self._ref_reused),
                    examples=tuple(str(r) for r in self._ref_rows),
                )
            )
        if self._undetermined_count:
            out.append(
                CheckResult(
                    id="DS-SCOPE-UNDETERMINED",
                    severity=Severity.WARNING,
                    explanation="Rows whose event type or event dates cannot be read are included (never "
                    "dropped), but central processing may discard them.",
                    rule="R-SCOPE-1",
                    count=self._undetermined_count,
                    examples=tuple(str(r) for r in self._undetermined),
                )
            )
        out.append(self._period_check())
        if self._failed_rows:
            out.append(
                CheckResult(
                    id="DS-RECORD-FAILURES",
                    severity=Severity.INFO,
                    explanation="Rows with record-level DQ failures are included as they are; invalid values "
                    "are reported back, never corrected or dropped.",
                    rule="R-INV-1",
                    count=self._failed_rows,
                )
            )
        if self._opt_out:
            out.append(
                CheckResult(
                    id="DS-OPT-OUT-INCLUDED",
                    severity=Severity.INFO,
                    explanation="Rows flagged with a national data opt-out or objection are included: the "
                    "opt-out does not apply to this legally required flow to NHS England.",
                    rule="IG-OPT-OUT",
                    count=self._opt_out,
                )
            )
        return out

    def _period_check(self) -> CheckResult:
        start, end, kept = self.derived()
        events = sum(n for m, n in self._month_events.items() if m < _month(self.import_date))
        details: dict[str, int | str] = {
            "stated_start": self.period_start.isoformat(),
            "stated_end": self.period_end.isoformat(),
            "derived_start": start.isoformat(),
            "derived_end": end.isoformat(),
            "months_kept": len(kept),
            "events_counted": events,
        }
        if start > self.period_start or end < self.period_end:
            return CheckResult(
                id="DS-PERIOD-DERIVED",
                severity=Severity.ERROR,
                explanation="The period DHSC would derive from the data (months with >=2% of events and "
                "enough event types) does not cover the stated period, so the file may not be selected.",
                rule="R-SUB-3",
                count=1,
                details=details,
            )
        return CheckResult(
            id="DS-PERIOD-DERIVED",
            severity=Severity.INFO,
            explanation="The period DHSC would derive from the data covers the stated period"
            + (" (under 100 events: stated dates kept)." if events < SMALL_FILE_EVENTS else "."),
            rule="R-SUB-3",
            count=0,
            details=details,
        )


def compare_with_previous(
    current: SubmissionProfile, previous: SubmissionProfile | None, thresholds: PartialThresholds
) -> list[CheckResult]:
    """Signs of a partial or top-up file compared with the previous submission (R-SUB-7)."""
    if previous is None:
        return []
    out: list[CheckResult] = []

    def drop(now: int, before: int) -> float:
        return (before - now) / before if before > 0 else 0.0

    if drop(current.rows, previous.rows) > thresholds.rows_drop:
        out.append(
            CheckResult(
                id="DS-PARTIAL-ROWS",
                severity=Severity.WARNING,
                explanation=f"Rows fell by more than {thresholds.rows_drop:.0%} since the previous submission: "
                "a partial or top-up file sent last makes the LA's figures undercount.",
                rule="R-SUB-7",
                count=previous.rows - current.rows,
                details={"previous": previous.rows, "current": current.rows},
            )
        )
    if drop(current.people, previous.people) > thresholds.people_drop:
        out.append(
            CheckResult(
                id="DS-PARTIAL-PEOPLE",
                severity=Severity.WARNING,
                explanation=f"People fell by more than {thresholds.people_drop:.0%} since the previous "
                "submission: the file may be partial.",
                rule="R-SUB-7",
                count=previous.people - current.people,
                details={"previous": previous.people, "current": current.people},
            )
        )
    missing_types = sorted(set(previous.event_types) - set(current.event_types))
    if missing_types:
        out.append(
            CheckResult(
                id="DS-PARTIAL-EVENT-TYPES",
                severity=Severity.WARNING,
                explanation="Event types present in the previous submission are missing from this one: the "
                "file may be a top-up of one extract.",
                rule="R-SUB-7",
                count=len(missing_types),
                details={"missing": ", ".join(missing_types)},
            )
        )
    if len(previous.months) - len(current.months) > thresholds.months_drop:
        out.append(
            CheckResult(
                id="DS-PARTIAL-MONTHS",
                severity=Severity.WARNING,
                explanation="Fewer months have events than in the previous submission: a rolling 12-month "
                "file should cover every month.",
                rule="R-SUB-3",
                count=len(previous.months) - len(current.months),
                details={"previous": len(previous.months), "current": len(current.months)},
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One row of a submission as remembered for the next diff: no values, only hashes."""

    record_key: str
    content_hash: str
    open_service: bool


class Diff(BaseModel):
    model_config = ConfigDict(frozen=True)

    previous_submission_id: str | None
    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    services_vanished_open: int = 0
    examples_removed: tuple[str, ...] = ()
    examples_vanished: tuple[str, ...] = ()


def diff_manifests(
    previous: Iterable[ManifestEntry], current: Iterable[ManifestEntry], *, previous_submission_id: str | None
) -> Diff:
    """Quarter-to-quarter difference; both inputs sorted by record key (a streaming merge join)."""
    added = removed = changed = unchanged = vanished = 0
    ex_removed: list[str] = []
    ex_vanished: list[str] = []
    p_it: Iterator[ManifestEntry] = iter(previous)
    c_it: Iterator[ManifestEntry] = iter(current)
    p = next(p_it, None)
    c = next(c_it, None)
    while p is not None or c is not None:
        if c is None or (p is not None and p.record_key < c.record_key):
            assert p is not None
            removed += 1
            if len(ex_removed) < MAX_EXAMPLES:
                ex_removed.append(p.record_key)
            if p.open_service:
                vanished += 1
                if len(ex_vanished) < MAX_EXAMPLES:
                    ex_vanished.append(p.record_key)
            p = next(p_it, None)
        elif p is None or c.record_key < p.record_key:
            added += 1
            c = next(c_it, None)
        else:
            if p.content_hash == c.content_hash:
                unchanged += 1
            else:
                changed += 1
            p = next(p_it, None)
            c = next(c_it, None)
    return Diff(
        previous_submission_id=previous_submission_id,
        added=added,
        removed=removed,
        changed=changed,
        unchanged=unchanged,
        services_vanished_open=vanished,
        examples_removed=tuple(ex_removed),
        examples_vanished=tuple(ex_vanished),
    )


def diff_checks(diff: Diff) -> list[CheckResult]:
    if diff.previous_submission_id is None:
        return []
    out = [
        CheckResult(
            id="DS-DIFF",
            severity=Severity.INFO,
            explanation="Records added, removed and changed since the previous submission for this LA.",
            rule="R-SUB-2",
            count=diff.added + diff.removed + diff.changed,
            details={
                "previous_submission_id": diff.previous_submission_id,
                "added": diff.added,
                "removed": diff.removed,
                "changed": diff.changed,
                "unchanged": diff.unchanged,
            },
            examples=diff.examples_removed,
        )
    ]
    if diff.services_vanished_open:
        out.append(
            CheckResult(
                id="DS-SERVICES-VANISHED",
                severity=Severity.WARNING,
                explanation="Services open in the previous submission are missing now without an end date; "
                "an ended service should be sent with its end date.",
                rule="R-DUP-3",
                count=diff.services_vanished_open,
                examples=diff.examples_vanished,
            )
        )
    return out


# -- held records left out of a period (the scope rules, with reasons) ------------------------------------


class LeftOutGroup(BaseModel):
    """Held records left out of the period for one reason: a count and the first references (never values)."""

    model_config = ConfigDict(frozen=True)

    reason: str
    rule: str
    explanation: str
    count: int
    examples: tuple[str, ...] = Field(
        default=(), description="Event References (R-FLD-23: never personal data), else record keys (keyed hashes)."
    )


class LeftOut(BaseModel):
    """How many of the records held for the LA are not in the period's file, and why."""

    model_config = ConfigDict(frozen=True)

    held: int
    in_file: int
    left_out: int
    by_reason: list[LeftOutGroup]


@dataclass
class LeftOutCounter:
    """Feed each left-out record (``add``) with its reason; ``summary`` groups them, most frequent first."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: LeftOutReason, reference: str) -> None:
        self.counts[reason.value] += 1
        ex = self.examples.setdefault(reason.value, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(reference)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def groups(self) -> list[LeftOutGroup]:
        return [
            LeftOutGroup(
                reason=reason,
                rule=REASONS[LeftOutReason(reason)].rule,
                explanation=REASONS[LeftOutReason(reason)].explanation,
                count=n,
                examples=tuple(self.examples.get(reason, ())),
            )
            for reason, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def summary(self, *, in_file: int) -> LeftOut:
        return LeftOut(held=in_file + self.total, in_file=in_file, left_out=self.total, by_reason=self.groups())


def left_out_check(left: LeftOut, *, rows_word: str = "held records") -> CheckResult | None:
    """The left-out records as a dataset check (INFO: leaving them out is what the scope rules ask)."""
    if not left.left_out:
        return None
    return CheckResult(
        id="DS-LEFT-OUT",
        severity=Severity.INFO,
        explanation=f"{left.left_out} of {left.held} {rows_word} are outside the period by the scope rules and are "
        "not in the file: " + "; ".join(f"{g.count} {g.explanation} ({g.rule})" for g in left.by_reason) + ".",
        rule="R-SCOPE-1",
        count=left.left_out,
        details={g.reason: g.count for g in left.by_reason},
        examples=tuple(f"{g.reason}: {ex}" for g in left.by_reason for ex in g.examples[:3]),
    )


def left_out_of(held_out: Iterable[HeldOut], *, in_file: int, period_start: date, period_end: date) -> LeftOut:
    """Group the records the period's file leaves out (``StateStore.iter_left_out``) by reason."""
    counter = LeftOutCounter()
    for h in held_out:
        reason = left_out_reason(
            h.kind,
            start=h.start,
            derived_end=h.derived_end,
            death=h.death,
            period_start=period_start,
            period_end=period_end,
        )
        if reason is None:
            reason = (
                LeftOutReason.NO_LINKED_ADULT_IN_SCOPE if h.kind is Kind.CARER_BY_ASSOCIATION else LeftOutReason.OTHER
            )
        counter.add(reason, h.event_reference or f"key {h.record_key}")
    return counter.summary(in_file=in_file)
