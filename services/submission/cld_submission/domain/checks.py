"""Dataset-level checks before sending, in the terms of the DQ report LAs get back. Pure, columnar, single pass.

Record-level findings say whether a value is valid; these checks look across rows of one submission file and
across submissions. Every check has a stable id, a severity, a one-line explanation citing its rule, and
counts. Examples are data row numbers of the file (row 1 is the first line after the header) or record
keys (keyed hashes): never a value from a record.

Checks never remove rows: a submission is a complete snapshot and invalid values are reported, not dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any, Final, Protocol

import polars as pl
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


_BUFFER_ROWS: Final = 20_000
_SEEDS: Final = (0x5EED_C1D0, 0xC1D5_0B5E)
_PY_WHITESPACE: Final = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""What ``str.strip()`` strips (``str.isspace``; Python's includes U+001C..U+001F, Rust's does not)."""
_SERVICE_KEY_FIELDS: Final = (
    "service_type",
    "service_component",
    "delivery_mechanism",
    "unit_cost",
    "cost_frequency_unit_type",
    "planned_units_per_week",
)
CHECKED_FIELDS: Final = (
    "date_of_birth",
    "gender",
    "event_reference",
    "event_type",
    "event_start_date",
    "client_type",
    "request_route_of_access",
    "assessment_type",
    *_SERVICE_KEY_FIELDS,
)
"""The record's fields the dataset checks read (by spec name)."""
CHECK_SCHEMA: Final[dict[str, pl.DataType | type[pl.DataType]]] = {
    "_row": pl.Int64,
    "_kind": pl.String,
    "_event_type": pl.String,
    "_person_key": pl.String,
    "_derived_end": pl.String,
    "_failed": pl.Boolean,
    "_opt_out": pl.Boolean,
    "_findings": pl.List(pl.List(pl.String)),
    **dict.fromkeys(CHECKED_FIELDS, pl.String),
}
"""A batch for :meth:`DatasetChecker.add_frame`: the row number examples name, the record's identity facts
(``identity.identify``: kind, event type, person key, derived end as ISO text), whether it failed (or has
findings), its opt-out flag, its findings ([field header, rule, validity, ...] each) and the record's
:data:`CHECKED_FIELDS` as received."""


def _v(name: str) -> pl.Expr:
    """The value as the checks compare it: stripped, '' when blank."""
    return pl.col(name).fill_null("").str.strip_chars(_PY_WHITESPACE)


def _hashed(expr: pl.Expr, name: str, when: pl.Expr | None = None) -> list[pl.Expr]:
    """Two 64-bit hashes of a key (null where ``when`` is false): compact to keep, negligible to collide."""
    out = []
    for suffix, seed in zip("ab", _SEEDS, strict=True):
        h = expr.hash(seed)
        out.append((h if when is None else pl.when(when).then(h)).alias(f"_{name}_{suffix}"))
    return out


@cache
def _gender_key_of(value: str) -> str:
    """R-DUP-5 compares genders by meaning (any release's code, any casing), else by the folded text."""
    return code_key("gender", value) or value.strip().casefold()


def _gender_keys(frame: pl.DataFrame) -> pl.Series:
    """Each row's gender key, computed once per distinct value of the batch."""
    values = frame["gender"].fill_null("")
    distinct = values.unique()
    keys = pl.Series([_gender_key_of(v) for v in distinct.to_list()], dtype=pl.String)
    return values.replace_strict(distinct, keys, return_dtype=pl.String).alias("_gender_key")


def _batch_keys() -> list[pl.Expr]:
    """Per row: the keys the checks across rows compare, and the labels the counts group by."""
    sep = "\x1f"
    kind, event_type, person = pl.col("_kind"), pl.col("_event_type"), pl.col("_person_key").fill_null("")
    end = pl.col("_derived_end").fill_null("")
    # R-DUP-1: DHSC's unique event within one submission: raw values except the derived end date. LA code is
    # implied (one LA per file); person = R-ID-1 person key; Event Reference is not used.
    base = [person, event_type, _v("event_start_date"), _v("client_type")]
    dup = (
        pl.when(event_type == "request")
        .then(pl.concat_str([*base, end, _v("request_route_of_access")], separator=sep))
        .when(event_type == "assessment")
        .then(pl.concat_str([*base, end, _v("assessment_type")], separator=sep))
        .when(event_type == "service")
        .then(pl.concat_str([*base, *(_v(n) for n in _SERVICE_KEY_FIELDS)], separator=sep))
        .otherwise(pl.concat_str([*base, end], separator=sep))
    )
    eligible = ~kind.is_in([Kind.CARER_BY_ASSOCIATION.value, Kind.UNDETERMINED.value]) & event_type.is_not_null()
    # What makes two rows the same event regardless of their reference (R-FLD-23).
    typeless = event_type.is_null() | (event_type == "")  # ``r.event_type or ...``
    identity = pl.concat_str(
        [person, pl.when(typeless).then(_v("event_type")).otherwise(event_type), _v("event_start_date")],
        separator=sep,
    )
    ref = _v("event_reference")
    has_ref = (ref != "") & (kind != Kind.CARER_BY_ASSOCIATION.value)
    carer = pl.when(kind == Kind.CARER_BY_ASSOCIATION.value).then(pl.lit("carer_by_association"))
    return [
        *_hashed(dup, "dup", eligible),
        *_hashed(pl.col("_person_key"), "pk"),
        _v("date_of_birth").hash(_SEEDS[0]).alias("_dob"),
        pl.col("_gender_key").hash(_SEEDS[0]).alias("_gender"),
        *_hashed(ref, "ref", has_ref),
        *_hashed(identity, "id"),
        pl.when(typeless).then(carer.otherwise(pl.lit("unknown"))).otherwise(event_type).alias("_label"),
        pl.when(event_type.is_not_null()).then(pl.col("_derived_end").str.slice(0, 7)).alias("_month"),
    ]


@dataclass(frozen=True, slots=True)
class _Tally:
    dup_groups: int
    dup_extra: int
    dup_rows: list[int]
    people: int
    person_conflicts: int
    dob_conflicts: int
    gender_conflicts: int
    person_rows: list[int]
    refs_reused: int
    ref_rows: list[int]


def _in_groups(frame: pl.DataFrame, keys: list[str], values: list[str]) -> pl.DataFrame:
    """The rows sorted by key then file order, each with its group (``_group``: 1, 2, ...), whether it is its
    group's first row (``_first``) and, per value column, whether it differs from the group's first row's value
    (``<value>_differs``). Sorting keeps memory flat (a hashed window or group-by holds ~3x as much at 500k)."""
    ordered = frame.sort([*keys, "_row"])
    first = pl.lit(value=True)
    for k in keys:
        first = first & (pl.col(k) == pl.col(k).shift())
    first = ~first.fill_null(value=False)
    ordered = ordered.with_columns(first.alias("_first"))
    return ordered.with_columns(
        pl.col("_first").cum_sum().alias("_group"),
        *(
            (pl.col(v) != pl.when(pl.col("_first")).then(pl.col(v)).forward_fill()).alias(f"{v}_differs")
            for v in values
        ),
    )


def _first_rows(frame: pl.DataFrame) -> list[int]:
    """The first rows of the file among these (examples, in file order)."""
    return sorted(frame["_row"].bottom_k(MAX_EXAMPLES).to_list())


def _tally(dup: list[pl.DataFrame], person: list[pl.DataFrame], ref: list[pl.DataFrame]) -> _Tally:
    """The checks across rows over the keys of every row: within a key, the first row in file order is the one
    the others are compared with (as DHSC's processing reads the file)."""
    d = _in_groups(
        pl.concat(dup) if dup else pl.DataFrame(schema={"_row": pl.Int64, "_dup_a": pl.UInt64, "_dup_b": pl.UInt64}),
        ["_dup_a", "_dup_b"],
        [],
    )
    repeats = d.filter(~pl.col("_first"))
    p = _in_groups(
        pl.concat(person)
        if person
        else pl.DataFrame(
            schema={"_row": pl.Int64, "_pk_a": pl.UInt64, "_pk_b": pl.UInt64, "_dob": pl.UInt64, "_gender": pl.UInt64}
        ),
        ["_pk_a", "_pk_b"],
        ["_dob", "_gender"],
    )
    conflicting = p.filter(pl.col("_dob_differs") | pl.col("_gender_differs"))
    r = _in_groups(
        pl.concat(ref)
        if ref
        else pl.DataFrame(
            schema={"_row": pl.Int64, "_ref_a": pl.UInt64, "_ref_b": pl.UInt64, "_id_a": pl.UInt64, "_id_b": pl.UInt64}
        ),
        ["_ref_a", "_ref_b"],
        ["_id_a", "_id_b"],
    )
    reused = r.filter(pl.col("_id_a_differs") | pl.col("_id_b_differs"))
    return _Tally(
        dup_groups=repeats["_group"].n_unique(),
        dup_extra=repeats.height,
        dup_rows=_first_rows(repeats),
        people=int(p["_first"].sum()),
        person_conflicts=conflicting["_group"].n_unique(),
        dob_conflicts=conflicting.filter(pl.col("_dob_differs"))["_group"].n_unique(),
        gender_conflicts=conflicting.filter(pl.col("_gender_differs"))["_group"].n_unique(),
        person_rows=_first_rows(conflicting),
        refs_reused=reused["_group"].n_unique(),
        ref_rows=_first_rows(reused),
    )


@dataclass
class DatasetChecker:
    """Feed the file's rows in order, a batch at a time (``add_frame``, a :data:`CHECK_SCHEMA` frame) or one at a
    time (``add``: buffered into batches), then ``finish``.

    Columnar (issue 11): each batch is reduced by polars expressions to the keys the checks compare (two 64-bit
    hashes per key, under two seeds: a collision on both is negligible at any CLD volume) and per-batch counts; the
    checks across rows are group-bys over those keys at the end. Memory: about 100 bytes per row, no dict per row.
    """

    period_start: date
    period_end: date
    import_date: date
    rows: int = 0
    _buffer: list[tuple[Any, ...]] = field(default_factory=list)
    _dup: list[pl.DataFrame] = field(default_factory=list)
    _person: list[pl.DataFrame] = field(default_factory=list)
    _ref: list[pl.DataFrame] = field(default_factory=list)
    _month_events: Counter[str] = field(default_factory=Counter)
    _month_types: dict[str, set[str]] = field(default_factory=dict)
    _event_types: Counter[str] = field(default_factory=Counter)
    _undetermined: list[int] = field(default_factory=list)
    _undetermined_count: int = 0
    _opt_out: int = 0
    _failed_rows: int = 0
    _findings: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    _tally: _Tally | None = None

    def add(self, r: CheckedRecord, *, row: int | None = None) -> None:
        """One row (a one-row batch, buffered). ``row``: the row number examples name (default: the count of rows
        added, 1 = the first)."""
        row = self.rows + len(self._buffer) + 1 if row is None else row
        rec = r.record
        self._buffer.append(
            (
                row,
                r.kind.value,
                r.event_type,
                r.person_key,
                r.derived_end.isoformat() if r.derived_end is not None else None,
                bool(r.failed or r.findings),
                bool(r.opt_out),
                [list(f) for f in r.findings],
                *(rec.get(n) for n in CHECKED_FIELDS),
            )
        )
        if len(self._buffer) >= _BUFFER_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            rows, self._buffer = self._buffer, []
            self.add_frame(pl.DataFrame(rows, schema=CHECK_SCHEMA, orient="row"))

    def add_frame(self, frame: pl.DataFrame) -> None:
        """A batch of rows in file order (:data:`CHECK_SCHEMA`; other columns are ignored)."""
        self._flush()
        self._tally = None
        if frame.height == 0:
            return
        self.rows += frame.height
        f = frame.with_columns(_gender_keys(frame)).lazy().with_columns(_batch_keys()).collect()
        counts = f.select(
            pl.col("_failed").sum().alias("failed"),
            pl.col("_opt_out").sum().alias("opt_out"),
            (pl.col("_kind") == Kind.UNDETERMINED.value).sum().alias("undetermined"),
        ).row(0)
        self._failed_rows += int(counts[0])
        self._opt_out += int(counts[1])
        self._undetermined_count += int(counts[2])
        if len(self._undetermined) < MAX_EXAMPLES and counts[2]:
            wanted = MAX_EXAMPLES - len(self._undetermined)
            self._undetermined += f.filter(pl.col("_kind") == Kind.UNDETERMINED.value)["_row"].head(wanted).to_list()
        for label, n in f.group_by("_label").len().iter_rows():
            self._event_types[label] += n
        months = (
            f.filter(pl.col("_month").is_not_null())
            .group_by("_month")
            .agg(pl.len().alias("n"), pl.col("_event_type").unique().alias("types"))
        )
        for m, n, types in months.iter_rows():
            self._month_events[m] += n
            self._month_types.setdefault(m, set()).update(types)
        findings = (
            f.filter(pl.col("_findings").list.len() > 0)
            .select(pl.col("_findings").explode())
            .select(pl.col("_findings").list.get(i, null_on_oob=True).alias(str(i)) for i in range(3))
            .group_by("0", "1", "2")
            .len()
        )
        for fld, rule, validity, n in findings.iter_rows():
            self._findings[(fld, rule, validity)] += n
        self._dup.append(f.filter(pl.col("_dup_a").is_not_null()).select("_row", "_dup_a", "_dup_b"))
        self._person.append(
            f.filter(pl.col("_person_key").is_not_null()).select("_row", "_pk_a", "_pk_b", "_dob", "_gender")
        )
        self._ref.append(f.filter(pl.col("_ref_a").is_not_null()).select("_row", "_ref_a", "_ref_b", "_id_a", "_id_b"))

    def _tallied(self) -> _Tally:
        """The checks across rows: group-bys over every batch's keys (computed once, until more rows come)."""
        self._flush()
        if self._tally is None:
            self._tally = _tally(self._dup, self._person, self._ref)
        return self._tally

    # -- results ----------------------------------------------------------------------------------------

    def record_findings(self) -> list[FindingCount]:
        """Record-level failures by field and rule, most frequent first."""
        self._flush()
        return [
            FindingCount(field=f, rule=rule, validity=validity, records=n)
            for (f, rule, validity), n in sorted(self._findings.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def profile(self) -> SubmissionProfile:
        self._flush()
        start, end, _kept = self.derived()
        return SubmissionProfile(
            rows=self.rows,
            people=self._tallied().people,
            event_types=dict(sorted(self._event_types.items())),
            months=sorted(self._month_events),
            derived_period_start=start,
            derived_period_end=end,
        )

    def derived(self) -> tuple[date, date, list[str]]:
        self._flush()
        return derive_period(
            dict(self._month_events),
            self._month_types,
            stated_start=self.period_start,
            stated_end=self.period_end,
            import_date=self.import_date,
        )

    def finish(self) -> list[CheckResult]:
        t = self._tallied()
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
        if t.dup_groups:
            out.append(
                CheckResult(
                    id="DS-DUP-EVENT",
                    severity=Severity.WARNING,
                    explanation="Rows share DHSC's unique-event key (person, start, end, client type and the "
                    "event type's own fields); DHSC keeps one row per event.",
                    rule="R-DUP-1",
                    count=t.dup_groups,
                    details={"extra_rows": t.dup_extra},
                    examples=tuple(str(r) for r in t.dup_rows),
                )
            )
        if t.person_conflicts:
            out.append(
                CheckResult(
                    id="DS-PERSON-CONFLICT",
                    severity=Severity.WARNING,
                    explanation="One person has different dates of birth or genders across rows; central "
                    "processing then guesses or sets 'Unknown'.",
                    rule="R-DUP-5",
                    count=t.person_conflicts,
                    details={"date_of_birth": t.dob_conflicts, "gender": t.gender_conflicts},
                    examples=tuple(str(r) for r in t.person_rows),
                )
            )
        if t.refs_reused:
            out.append(
                CheckResult(
                    id="DS-EVENT-REF-REUSED",
                    severity=Severity.WARNING,
                    explanation="An Event Reference is used for different events (person, type or start "
                    "differ); a reference must be unique per event.",
                    rule="R-FLD-23",
                    count=t.refs_reused,
                    examples=tuple(str(r) for r in t.ref_rows),
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
