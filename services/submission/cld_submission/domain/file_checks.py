"""The submission's dataset checks over an LA's own file, for ``cld validate`` (issue 13 item 5). Pure, one pass.

One implementation: the same ``DatasetChecker`` (duplicates by DHSC's keys, person conflicts, reused Event
References, derived vs stated period), the same scope rules with reasons (``scope.left_out_reason``) and the same
partial/top-up comparison (``compare_with_previous``) as the submission service runs before sending. The CLI
imports this module (``cld_cli`` may import service packages; services never import each other). The checks
live here rather than in ``cld_schemas`` because they are built on the submission's record identity
(``identity.identify``: keyed hashes, kinds, derived end dates), which is this service's domain, not spec data.

Examples are the caller's row numbers (as its findings number them), never values. Record and person keys are
keyed with a random secret per run: they never leave the process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

from .checks import (
    MAX_EXAMPLES,
    CheckResult,
    DatasetChecker,
    LeftOut,
    LeftOutCounter,
    PartialThresholds,
    Severity,
    SubmissionProfile,
    compare_with_previous,
)
from .identity import KeyHasher, Kind, ProcessKeyHasher, identify, parse_date
from .scope import LeftOutReason, carer_left_out, left_out_reason

UNKNOWN_LA: Final = "000"
_PERIOD_MEMO_MAX: Final = 64
_EVENT_TYPES: Final = ("request", "assessment", "service", "review")
_TOP_UP_MIN_ROWS: Final = 100
"""A file this small may well hold one event type only (a small LA, a test file): no top-up sign below it."""


@dataclass(frozen=True, slots=True)
class _Row:
    """One row of the file as the dataset checks read it (``checks.CheckedRecord``)."""

    kind: Kind
    event_type: str | None
    person_key: str | None
    derived_end: date | None
    record: dict[str, str | None]
    findings: tuple[tuple[str, str, str], ...]
    failed: bool
    opt_out: bool = False


@dataclass(frozen=True, slots=True)
class FileCheckResult:
    checks: list[CheckResult]
    profile: SubmissionProfile
    out_of_period: LeftOut
    stated_period: tuple[date, date] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset_checks": [c.model_dump(mode="json") for c in self.checks],
            "dataset_profile": self.profile.model_dump(mode="json"),
            "rows_outside_period": self.out_of_period.model_dump(mode="json"),
            "stated_period": (
                {"start": self.stated_period[0].isoformat(), "end": self.stated_period[1].isoformat()}
                if self.stated_period
                else None
            ),
        }


def _period(
    rec: Mapping[str, str | None], memo: dict[tuple[str | None, str | None], tuple[date, date] | None]
) -> tuple[date, date] | None:
    """The row's stated period (memoised by its text: a file states one period on every row)."""
    text = (rec.get("reporting_period_start_date"), rec.get("reporting_period_end_date"))
    if text in memo:
        return memo[text]
    period = _parse_period(rec)
    if len(memo) < _PERIOD_MEMO_MAX:  # bounded: a file whose rows all state different periods stays flat
        memo[text] = period
    return period


def _parse_period(rec: Mapping[str, str | None]) -> tuple[date, date] | None:
    try:
        start = parse_date(rec.get("reporting_period_start_date"))
        end = parse_date(rec.get("reporting_period_end_date"))
    except ValueError:
        return None
    if start is None or end is None or end < start:
        return None
    return start, end


@dataclass
class FileChecks:
    """Feed every row of the file (``add``) in order, then ``finish``."""

    import_date: date
    la_code: str | None = None
    previous: SubmissionProfile | None = None
    thresholds: PartialThresholds = field(default_factory=PartialThresholds)
    _hasher: KeyHasher = field(default_factory=ProcessKeyHasher)
    _checker: DatasetChecker | None = None
    _periods: Counter[tuple[date, date]] = field(default_factory=Counter)
    _out: LeftOutCounter = field(default_factory=LeftOutCounter)
    _in_scope_people: set[str] = field(default_factory=set)
    _carers: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)
    _no_period_rows: list[int] = field(default_factory=list)
    _no_period: int = 0
    _rows: int = 0
    _period_memo: dict[tuple[str | None, str | None], tuple[date, date] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The stated period is only known at the end (the most common one): set on the checker in finish().
        self._checker = DatasetChecker(period_start=date.min, period_end=date.min, import_date=self.import_date)

    def add(self, row: int, record: Mapping[str, str | None], findings: Iterable[tuple[str, str, str]] = ()) -> None:
        """``findings``: (field header, rule, validity) of the row's record-level failures."""
        assert self._checker is not None
        self._rows += 1
        la = record.get("la_code") or self.la_code or UNKNOWN_LA
        ident = identify(self._hasher, la, record, with_content_hash=False)
        found = tuple(findings)
        self._checker.add(
            _Row(
                kind=ident.kind,
                event_type=ident.event_type,
                person_key=ident.person_key,
                derived_end=ident.derived_end,
                record=record if isinstance(record, dict) else dict(record),
                findings=found,
                failed=bool(found),
            ),
            row=row,
        )
        period = _period(record, self._period_memo)
        if period is None:
            self._no_period += 1
            if len(self._no_period_rows) < MAX_EXAMPLES:
                self._no_period_rows.append(row)
            return
        self._periods[period] += 1
        reason = left_out_reason(
            ident.kind,
            start=ident.start,
            derived_end=ident.derived_end,
            death=ident.death,
            period_start=period[0],
            period_end=period[1],
        )
        if reason is not None:
            self._out.add(reason, str(row))
        elif ident.kind is Kind.CARER_BY_ASSOCIATION:
            self._carers.append((row, ident.linked_person_keys))
        elif ident.person_key is not None:
            self._in_scope_people.add(ident.person_key)

    def finish(self) -> FileCheckResult:
        assert self._checker is not None
        for row, linked in self._carers:
            if carer_left_out(linked, self._in_scope_people):
                self._out.add(LeftOutReason.NO_LINKED_ADULT_IN_SCOPE, str(row))
        self._carers.clear()
        stated = self._periods.most_common(1)[0][0] if self._periods else None
        checks: list[CheckResult] = []
        if stated is not None:
            self._checker.period_start, self._checker.period_end = stated
            checks = [c for c in self._checker.finish() if c.id != "DS-RECORD-FAILURES"]  # the summary counts these
        else:
            checks = [c for c in self._checker.finish() if c.id not in ("DS-RECORD-FAILURES", "DS-PERIOD-DERIVED")]
        profile = self._checker.profile()
        if stated is None:  # no readable stated period: nothing to derive against
            profile = profile.model_copy(update={"derived_period_start": None, "derived_period_end": None})
        out = self._out.summary(in_file=self._rows - self._out.total)
        checks += self._period_checks(stated, out)
        checks += self._top_up_checks(profile)
        checks += compare_with_previous(profile, self.previous, self.thresholds)
        return FileCheckResult(checks=checks, profile=profile, out_of_period=out, stated_period=stated)

    def _period_checks(self, stated: tuple[date, date] | None, out: LeftOut) -> list[CheckResult]:
        checks: list[CheckResult] = []
        if len(self._periods) > 1:
            checks.append(
                CheckResult(
                    id="DS-PERIODS-DIFFER",
                    severity=Severity.WARNING,
                    explanation="Rows state different reporting periods; a file states one period (the most "
                    "common is used for the checks across rows; each row's scope is judged by its own).",
                    rule="R-SUB-2",
                    count=len(self._periods),
                    details={f"{s.isoformat()}..{e.isoformat()}": n for (s, e), n in self._periods.most_common(5)},
                )
            )
        if self._no_period:
            checks.append(
                CheckResult(
                    id="DS-PERIOD-UNREADABLE",
                    severity=Severity.WARNING,
                    explanation="Rows whose Reporting Period Start/End Date cannot be read: their scope cannot be "
                    "judged (the record-level findings say what is wrong).",
                    rule="R-SCOPE-1",
                    count=self._no_period,
                    examples=tuple(str(r) for r in self._no_period_rows),
                )
            )
        if out.left_out:
            checks.append(
                CheckResult(
                    id="DS-OUTSIDE-PERIOD",
                    severity=Severity.WARNING,
                    explanation=f"{out.left_out} of {out.held} rows are outside their reporting period by the scope "
                    "rules: central processing filters them out (R-FIL-1..3). "
                    + "; ".join(f"{g.count} {g.explanation} ({g.rule})" for g in out.by_reason)
                    + ".",
                    rule="R-FIL-1",
                    count=out.left_out,
                    details={g.reason: g.count for g in out.by_reason},
                    examples=tuple(f"{g.reason}: row {ex}" for g in out.by_reason for ex in g.examples[:3]),
                )
            )
        return checks

    def _top_up_checks(self, profile: SubmissionProfile) -> list[CheckResult]:
        """Signs of a partial or top-up file within the file itself (R-SUB-7), without a previous one."""
        if profile.rows < _TOP_UP_MIN_ROWS:
            return []
        missing = [t for t in _EVENT_TYPES if not profile.event_types.get(t)]
        if not missing:
            return []
        return [
            CheckResult(
                id="DS-TOP-UP-EVENT-TYPES",
                severity=Severity.WARNING,
                explanation="The file has no rows of some event types: it may be a partial extract or a top-up, "
                "and a file sent last replaces the LA's figures (a file is a complete snapshot).",
                rule="R-SUB-7",
                count=len(missing),
                details={"missing": ", ".join(missing)},
            )
        ]


def previous_profile(report: Mapping[str, Any]) -> SubmissionProfile | None:
    """The profile of an earlier ``cld validate --json`` report (``dataset_profile``), to compare a new file with."""
    summary = report.get("summary", report)
    data = summary.get("dataset_profile") if isinstance(summary, Mapping) else None
    return SubmissionProfile.model_validate(data) if isinstance(data, Mapping) else None


__all__ = ["FileCheckResult", "FileChecks", "LeftOutReason", "previous_profile"]
