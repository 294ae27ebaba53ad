"""The per-record implementations of submission assembly and the dataset checks, kept as an oracle (issue 11).

These are the engines the submission service ran before the columnar ones (``cld_submission.domain.frames``,
``cld_submission.domain.checks.DatasetChecker``), kept verbatim so that a differential property test
(``tests/unit/test_submission_columnar.py``) can hold the new ones to the old behaviour. Only tests import this
module; nothing in production does.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from cld_runtime.files import private_dir
from cld_schemas.spec import Spec, SpecField, load_spec
from cld_submission.adapters.submission_file import (
    _NUMERIC_FORMATS,
    _PERIOD_FIELDS,
    LINE_TERMINATOR,
    AssembledFile,
    cld_date,
    neutralise,
)
from cld_submission.domain.checks import (
    MAX_EXAMPLES,
    SMALL_FILE_EVENTS,
    CheckedRecord,
    CheckResult,
    FindingCount,
    Severity,
    SubmissionProfile,
    _month,
    derive_period,
)
from cld_submission.domain.identity import Kind, code_key
from cld_submission.domain.records import StoredRecord

_FLUSH_ROWS = 2000


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


@dataclass
class OracleDatasetChecker:
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


def oracle_write_submission_file(
    records: Iterable[StoredRecord],
    path: Path,
    *,
    period_start: date,
    period_end: date,
    spec: Spec | None = None,
    on_row: Callable[[StoredRecord], None] | None = None,
) -> AssembledFile:
    """Write the file atomically (temporary name, fsync, rename); ``on_row`` sees every row written."""
    fields: tuple[SpecField, ...] = (spec or load_spec()).file_fields
    plan = [(f.name, f.format in _NUMERIC_FORMATS) for f in fields]
    period = {_PERIOD_FIELDS[0]: cld_date(period_start), _PERIOD_FIELDS[1]: cld_date(period_end)}
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    digest = hashlib.sha256()
    size = rows = opt_out = 0
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=LINE_TERMINATOR)
    with tmp.open("wb") as out:

        def flush() -> None:
            nonlocal size
            data = buf.getvalue().encode("utf-8")
            digest.update(data)
            out.write(data)
            size += len(data)
            buf.seek(0)
            buf.truncate()

        writer.writerow([f.header for f in fields])
        for r in records:
            rec = r.record
            row: list[str] = []
            for name, numeric in plan:
                value = period.get(name) or rec.get(name)
                row.append(neutralise(value, numeric=numeric) if value else "")
            writer.writerow(row)
            rows += 1
            opt_out += r.opt_out
            if on_row is not None:
                on_row(r)
            if rows % _FLUSH_ROWS == 0:
                flush()
        flush()
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return AssembledFile(path=path, sha256=digest.hexdigest(), rows=rows, size_bytes=size, opt_out_rows=opt_out)
