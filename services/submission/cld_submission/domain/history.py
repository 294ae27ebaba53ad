"""Submission history from its lifecycle events: a pure replay of ``cld.submissions.v1`` (issue 12, item 4).

Every step of a submission is a ``SubmissionEvent`` carrying the submission's fields after the step
(``lifecycle._event``), so folding a submission's events in order gives back the ``Submission`` the repository
held: who requested and when (the 'requested' event's ``by`` and ``at``), who approved and when (the
'approved' event's), the file's hash, name, size and rows, the transport and MESH message id, what superseded
it. The topic is keyed by LA code, so one submission's events are in one partition, in order.

The replay is strict and says what it skipped: an event repeated by the outbox (published again after a crash
between publishing and marking it published) is a duplicate and applied once; a step the state machine does
not allow from the state reached so far, or a first event that is not 'requested', is refused with a reason
(never a guess). Each applied event also gives one line of the rebuilt audit chain (:func:`audit_fields`).

What the events do not hold cannot be rebuilt from them: DQ summaries, manifests (the diff against the
previous submission), row findings, the assembled files, and the audit lines that are not lifecycle steps
(repeated requests, refused access, export decisions). :data:`NOT_IN_EVENTS` names them for the report.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from cld_schemas.events import SubmissionEvent, SubmissionState

from .lifecycle import ALLOWED, Submission, advance

REBUILD_ACTOR: Final = "cld-submission-rebuild"
"""Who took a step the rebuild itself takes (:func:`unsendable`)."""

NOT_IN_EVENTS: Final = (
    "DQ summaries (GET /v1/submissions/{id}/summary)",
    "manifests and row findings (the diff against the previous submission, the DQ report page, exports)",
    "assembled submission files (an approved, unsent submission must be requested again)",
    "audit lines that are not lifecycle steps (repeated requests, refused access, export decisions)",
)
"""What a rebuild from ``cld.submissions.v1`` cannot give back: these lived only on the lost volume."""


@dataclass(frozen=True, slots=True)
class LocatedEvent:
    """A lifecycle event with where it was read from."""

    event: SubmissionEvent
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Refused:
    """An event the replay did not apply, and why (ids, states and offsets only: no personal data)."""

    submission_id: str
    partition: int
    offset: int
    reason: str


@dataclass(slots=True)
class Replayed:
    """The submissions rebuilt (in the order first requested) and the events applied, in the order applied."""

    submissions: dict[str, Submission] = field(default_factory=dict)
    applied: list[LocatedEvent] = field(default_factory=list)
    duplicates: int = 0
    refused: list[Refused] = field(default_factory=list)


def in_order(partitions: Sequence[Sequence[LocatedEvent]]) -> list[LocatedEvent]:
    """All partitions' events merged by time, each partition's own order kept (one submission is in one
    partition, so its steps stay in the order they were taken; ties keep partition order)."""
    return list(heapq.merge(*partitions, key=lambda e: e.event.at))


def _requested(e: SubmissionEvent) -> Submission:
    return Submission(
        submission_id=e.submission_id,
        la_code=e.la_code,
        period_start=e.period_start,
        period_end=e.period_end,
        state=e.state,
        version=e.version,
        supersedes=e.supersedes,
        requested_by=e.by or "",
        requested_at=e.at,
        updated_at=e.at,
        detail=e.detail,
    )


_CARRIED: Final = (
    "supersedes",
    "superseded_by",
    "file_sha256",
    "file_name",
    "rows",
    "size_bytes",
    "message_id",
    "transport",
)


def _after(sub: Submission, e: SubmissionEvent) -> Submission:
    """``sub`` after the step ``e`` (the event carries every field the step set; ``None`` leaves a field)."""
    changes: dict[str, Any] = {"state": e.state, "updated_at": e.at, "detail": e.detail, "version": e.version}
    for name in _CARRIED:
        value = getattr(e, name)
        if value is not None:
            changes[name] = value
    if e.state is SubmissionState.APPROVED:
        changes["approved_by"] = e.by
        changes["approved_at"] = e.at
    return sub.model_copy(update=changes)


def replay(events: Iterable[LocatedEvent]) -> Replayed:
    """Fold lifecycle events (in the order of :func:`in_order`) into submissions."""
    out = Replayed()
    seen: set[tuple[str, SubmissionState, datetime]] = set()
    for located in events:
        e = located.event
        step = (e.submission_id, e.state, e.at)
        current = out.submissions.get(e.submission_id)
        if current is None:
            if e.state is not SubmissionState.REQUESTED:
                out.refused.append(
                    Refused(
                        e.submission_id,
                        located.partition,
                        located.offset,
                        f"its first event is '{e.state.value}', not 'requested' (earlier events are missing)",
                    )
                )
                continue
            out.submissions[e.submission_id] = _requested(e)
        elif step in seen:
            out.duplicates += 1  # the outbox published it again after a crash: applied once
            continue
        elif e.state not in ALLOWED[current.state]:
            out.refused.append(
                Refused(
                    e.submission_id,
                    located.partition,
                    located.offset,
                    f"'{current.state.value}' cannot become '{e.state.value}' (an event is missing or out of order)",
                )
            )
            continue
        else:
            out.submissions[e.submission_id] = _after(current, e)
        seen.add(step)
        out.applied.append(located)
    return out


def audit_fields(located: LocatedEvent, *, topic: str) -> tuple[str, dict[str, Any]]:
    """The audit line of one applied lifecycle step: (action, fields). The action is the state reached; the
    line says which topic, partition and offset it was rebuilt from, and keeps the step's own time."""
    e = located.event
    return e.state.value, {
        "at": e.at.isoformat(),
        "submission_id": e.submission_id,
        "la_code": e.la_code,
        "period_start": e.period_start.isoformat(),
        "period_end": e.period_end.isoformat(),
        "by": e.by,
        "version": e.version,
        "supersedes": e.supersedes,
        "superseded_by": e.superseded_by,
        "file_sha256": e.file_sha256,
        "rows": e.rows,
        "message_id": e.message_id,
        "transport": e.transport,
        "detail": e.detail,
        "rebuilt_from": f"{topic}/{located.partition}/{located.offset}",
    }


def unsendable(
    submissions: Iterable[Submission], *, file_held: Callable[[Submission], bool], at: datetime
) -> list[tuple[Submission, SubmissionEvent]]:
    """Approved submissions whose assembled file is gone (lost with the volume), moved to 'failed'.

    Left 'approved', the service would try to send a file it no longer has on every start, and the
    approved version would block any new request for its period (``lifecycle.decide_request``). It may have
    reached MESH before the volume was lost (its 'sent' event not yet published): the detail says so.
    """
    out: list[tuple[Submission, SubmissionEvent]] = []
    for sub in submissions:
        if sub.state is SubmissionState.APPROVED and not file_held(sub):
            out.append(
                advance(
                    sub,
                    SubmissionState.FAILED,
                    at=at,
                    by=REBUILD_ACTOR,
                    detail="approved but its assembled file was lost with the state volume, so it cannot be sent "
                    "(it may have reached MESH just before: check the mailbox); request it again",
                )
            )
    return out
