"""A submission's life as a pure state machine. Every step yields a ``SubmissionEvent`` for ``cld.submissions.v1``.

    requested -> assembled -> checked -> approved -> sent -> acknowledged
        (any state before 'sent' -> failed; sent -> failed; requested/assembled/checked -> superseded)

- Sending needs an explicit approval by a named operator of a submission in ``checked`` (its DQ summary
  exists and was shown); approval of anything else is refused.
- Requests are idempotent: the same LA, period and content (same file SHA-256) give back the submission
  already made, unless it failed or was superseded.
- Different content for the same LA and period is a resubmission: a new version linked to the previous
  one (``supersedes``). A previous version not yet approved becomes ``superseded``. A previous version that
  is approved but not yet sent blocks the resubmission (it is leaving right now; wait for 'sent'). A version
  already sent stays as it is (DHSC takes the latest file, R-SUB-4); the new one must be approved again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from cld_schemas.events import SubmissionEvent, SubmissionState

S = SubmissionState

ALLOWED: Final[dict[SubmissionState, frozenset[SubmissionState]]] = {
    S.REQUESTED: frozenset({S.ASSEMBLED, S.FAILED, S.SUPERSEDED}),
    S.ASSEMBLED: frozenset({S.CHECKED, S.FAILED, S.SUPERSEDED}),
    S.CHECKED: frozenset({S.APPROVED, S.FAILED, S.SUPERSEDED}),
    S.APPROVED: frozenset({S.SENT, S.FAILED}),
    S.SENT: frozenset({S.ACKNOWLEDGED, S.FAILED}),
    S.ACKNOWLEDGED: frozenset(),
    S.FAILED: frozenset(),
    S.SUPERSEDED: frozenset(),
}
UNSENT: Final = frozenset({S.REQUESTED, S.ASSEMBLED, S.CHECKED})
DEAD: Final = frozenset({S.FAILED, S.SUPERSEDED})
COVERING: Final = frozenset({S.APPROVED, S.SENT, S.ACKNOWLEDGED})
"""States in which a submission counts as on its way for a deadline."""


EARLIEST_PERIOD_START: Final = date(2023, 4, 1)
"""CLD is mandatory from 1 April 2023 (the 2023 Directions); no reporting period starts before it."""
PERIOD_MONTHS: Final = 12
"""Each quarter an LA sends a rolling 12-month period (R-SUB-1): whole months, 12 of them."""


class PeriodError(ValueError):
    """A reporting period DHSC would not accept; the message says what is wrong (dates only)."""


def _month_end(d: date) -> date:
    nxt = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return date.fromordinal(nxt.toordinal() - 1)


def check_period(start: date, end: date, *, today: date) -> None:
    """Raise :class:`PeriodError` unless ``start..end`` is a rolling 12-month reporting period DHSC accepts:
    it starts on the first day of a month, no earlier than 1 April 2023, ends on the last day of the 12th month,
    and ends no later than the end of the current month (a period still to come cannot be submitted)."""
    if end < start:
        raise PeriodError(f"the period ends ({end}) before it starts ({start})")
    if start < EARLIEST_PERIOD_START:
        raise PeriodError(f"the period starts ({start}) before CLD began ({EARLIEST_PERIOD_START})")
    if end > _month_end(today):
        raise PeriodError(f"the period ends ({end}) after the current month: it is not over yet")
    if start.day != 1:
        raise PeriodError(f"a reporting period starts on the first day of a month, not {start}")
    last = start.year * 12 + start.month - 1 + PERIOD_MONTHS - 1
    expected = _month_end(date(last // 12, last % 12 + 1, 1))
    if end != expected:
        raise PeriodError(f"a reporting period is a rolling {PERIOD_MONTHS} months: from {start} it ends {expected}")


class TransitionRefusedError(Exception):
    """A step the state machine does not allow. The message is safe to show (no personal data)."""


class DeliveryProblem(BaseModel):
    """The last transport error of a submission being delivered, and when the next attempt is due. Kept in
    memory by the running service (not stored, not an event): ``cld submission status`` shows it, so a MESH
    outage is visible without reading logs. No personal data: an operation, an error type, MESH's status."""

    model_config = ConfigDict(frozen=True)

    error: str = Field(description="What failed, e.g. 'upload: MeshHttpError (HTTP 503 ...)'.")
    at: datetime
    next_retry_at: datetime | None = Field(default=None, description="When the next attempt is due.")
    attempts: int = Field(default=1, ge=1, description="Failed attempts so far.")


class Submission(BaseModel):
    """The current state of one submission (a version of one LA's file for one period)."""

    model_config = ConfigDict(frozen=True)

    submission_id: str
    la_code: str
    period_start: date
    period_end: date
    state: SubmissionState
    version: int = 1
    supersedes: str | None = None
    superseded_by: str | None = None
    requested_by: str
    requested_at: datetime
    approved_by: str | None = None
    approved_at: datetime | None = None
    file_sha256: str | None = None
    file_name: str | None = None
    rows: int | None = None
    size_bytes: int | None = None
    message_id: str | None = None
    transport: str | None = None
    updated_at: datetime
    detail: str | None = Field(default=None, description="Last step's reason in words; never personal data.")
    delivery_problem: DeliveryProblem | None = Field(
        default=None,
        description="While delivering: the last transport error and the next retry (from the running service's "
        "memory, filled in by the status call; not stored).",
    )

    @property
    def local_id(self) -> str:
        """The MESH local id: the submission id, so that a resend after a crash is recognised."""
        return self.submission_id


def _event(sub: Submission, *, by: str | None) -> SubmissionEvent:
    return SubmissionEvent(
        submission_id=sub.submission_id,
        la_code=sub.la_code,
        period_start=sub.period_start,
        period_end=sub.period_end,
        state=sub.state,
        at=sub.updated_at,
        by=by,
        version=sub.version,
        supersedes=sub.supersedes,
        file_sha256=sub.file_sha256,
        rows=sub.rows,
        message_id=sub.message_id,
        detail=sub.detail,
        file_name=sub.file_name,
        size_bytes=sub.size_bytes,
        transport=sub.transport,
        superseded_by=sub.superseded_by,
    )


def new_submission(
    *,
    submission_id: str,
    la_code: str,
    period_start: date,
    period_end: date,
    requested_by: str,
    at: datetime,
    version: int = 1,
    supersedes: str | None = None,
) -> tuple[Submission, SubmissionEvent]:
    if not requested_by.strip():
        raise TransitionRefusedError("a submission must name who requested it")
    if period_end < period_start:
        raise TransitionRefusedError("the period ends before it starts")
    sub = Submission(
        submission_id=submission_id,
        la_code=la_code,
        period_start=period_start,
        period_end=period_end,
        state=S.REQUESTED,
        version=version,
        supersedes=supersedes,
        requested_by=requested_by.strip(),
        requested_at=at,
        updated_at=at,
    )
    return sub, _event(sub, by=sub.requested_by)


def advance(
    sub: Submission,
    to: SubmissionState,
    *,
    at: datetime,
    by: str | None = None,
    detail: str | None = None,
    **changes: object,
) -> tuple[Submission, SubmissionEvent]:
    """Move ``sub`` to ``to`` (refused unless allowed), applying ``changes`` to its fields."""
    if to not in ALLOWED[sub.state]:
        raise TransitionRefusedError(
            f"submission {sub.submission_id} is {sub.state.value}; it cannot become {to.value}"
        )
    if to is S.APPROVED:
        raise TransitionRefusedError("use approve(): approval needs a named operator")
    new = sub.model_copy(update={**changes, "state": to, "updated_at": at, "detail": detail})
    return new, _event(new, by=by)


def approve(sub: Submission, *, by: str, at: datetime) -> tuple[Submission, SubmissionEvent]:
    """A named operator approves a checked submission for sending (after seeing its DQ summary)."""
    name = by.strip()
    if not name:
        raise TransitionRefusedError("approval must name the operator who approves")
    if sub.state is not S.CHECKED:
        raise TransitionRefusedError(
            f"submission {sub.submission_id} is {sub.state.value}; only a checked submission can be approved"
        )
    new = sub.model_copy(
        update={"state": S.APPROVED, "updated_at": at, "approved_by": name, "approved_at": at, "detail": None}
    )
    return new, _event(new, by=name)


@dataclass(frozen=True, slots=True)
class Existing:
    """The request repeats one already made (same LA, period and file content)."""

    submission: Submission


@dataclass(frozen=True, slots=True)
class NewVersion:
    """Make a new submission with this version; ``supersede`` are unsent earlier versions to retire."""

    version: int
    supersedes: str | None
    supersede: tuple[Submission, ...]


def decide_request(
    history: Iterable[Submission], *, la_code: str, period_start: date, period_end: date, file_sha256: str
) -> Existing | NewVersion:
    """Idempotency and versioning of a request, given every earlier submission of this LA."""
    same_period = sorted(
        (s for s in history if s.la_code == la_code and s.period_start == period_start and s.period_end == period_end),
        key=lambda s: s.version,
    )
    for s in reversed(same_period):
        if s.file_sha256 == file_sha256 and s.state not in DEAD:
            return Existing(s)
    in_flight = [s for s in same_period if s.state is S.APPROVED]
    if in_flight:
        raise TransitionRefusedError(
            f"version {in_flight[-1].version} ({in_flight[-1].submission_id}) of this period is approved and "
            "being sent; request again once it is sent"
        )
    if not same_period:
        return NewVersion(version=1, supersedes=None, supersede=())
    latest = same_period[-1]
    return NewVersion(
        version=latest.version + 1,
        supersedes=latest.submission_id,
        supersede=tuple(s for s in same_period if s.state in UNSENT),
    )
