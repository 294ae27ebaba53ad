"""Rebuild the submission history and the audit chain from ``cld.submissions.v1`` (the service must be stopped).

After losing the state volume: reads every lifecycle event the topic holds (it is kept for ever:
``cld_runtime.topics.TOPIC_CONFIGS``) with the same reader as ``rebuild_state``, replays them
(``history.replay``: submissions, states, versions, approvals, MESH receipts) into an EMPTY submissions
repository through its ``save`` interface (no outbox entries: nothing is published again), and writes one
hash-chained audit line per applied step into a NEW audit log, then verifies the chain.

It refuses to run over a repository that holds submissions or over an existing audit log: those are the
originals and a rebuild must never bury them (move the old state directory away first). What it could not
recover is in :class:`HistoryReport` (``problems``: events that could not be read, refused by the state
machine, offsets deleted, no topic) and :data:`history.NOT_IN_EVENTS` lists what the events never held.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pydantic import ValidationError

from cld_runtime.messages import unreadable_reason
from cld_schemas import topics
from cld_schemas.events import SubmissionEvent

from ..adapters.audit_log import AuditLog, AuditVerification, verify_audit_log
from ..adapters.ports import SubmissionsRepository as Repository
from ..adapters.stores import open_repository
from ..adapters.submission_file import sha256_of
from ..domain.history import NOT_IN_EVENTS, LocatedEvent, Refused, Replayed, audit_fields, in_order, replay, unsendable
from ..service_layer.workflow import WorkflowSettings
from .rebuild import PartitionCoverage, Progress, RetainedReader, missing_partitions

if TYPE_CHECKING:
    from .settings import SubmissionSettings

AUDIT_NAME: Final = "audit.jsonl"
"""The audit log's file name in the state directory (as the service opens it)."""


@dataclass(frozen=True, slots=True)
class Restored:
    replayed: Replayed
    audit: AuditVerification
    failed_by_rebuild: tuple[str, ...] = ()
    """Approved submissions whose file was lost, moved to 'failed' by the rebuild."""


class HistoryNotEmptyError(Exception):
    """The repository or the audit log already holds something: a rebuild never writes over the originals."""


@dataclass(frozen=True, slots=True)
class HistoryReport:
    topic: str
    events_read: int
    submissions: int
    steps_applied: int
    duplicates: int
    audit_lines: int
    audit_verified: bool
    refused: tuple[Refused, ...] = field(default=())
    unreadable_by_reason: Mapping[str, int] = field(default_factory=dict)
    partitions: tuple[PartitionCoverage, ...] = field(default=())
    missing: tuple[str, ...] = field(default=())
    failed_by_rebuild: tuple[str, ...] = field(default=())
    not_in_events: tuple[str, ...] = NOT_IN_EVENTS

    @property
    def problems(self) -> tuple[str, ...]:
        """What the rebuilt history lacks of what the topic should have given back (empty: complete)."""
        out = [*self.missing]
        out += [
            f"partition {p.partition}: offsets 0..{p.first_offset - 1} are gone ({p.first_offset} lifecycle "
            "event(s) deleted; the topic is meant to keep them for ever)"
            for p in self.partitions
            if p.first_offset > 0
        ]
        out += [f"{n} event(s) could not be read ({reason})" for reason, n in self.unreadable_by_reason.items()]
        out += [
            f"submission {r.submission_id}: event at partition {r.partition} offset {r.offset} not applied: {r.reason}"
            for r in self.refused
        ]
        out += [
            f"submission {sid}: approved but not sent, and its file was lost: moved to 'failed' (published when "
            "the service starts); request it again"
            for sid in self.failed_by_rebuild
        ]
        if not self.audit_verified:
            out.append("the rebuilt audit log does not verify")
        return tuple(out)

    @property
    def complete(self) -> bool:
        return not self.problems


def _check_empty(repo: Repository, audit_path: Path) -> None:
    held = len(repo.history())
    if held:
        raise HistoryNotEmptyError(
            f"the submissions repository already holds {held} submission(s): move the state directory away "
            "and rebuild into an empty one"
        )
    if audit_path.exists() and audit_path.stat().st_size > 0:
        raise HistoryNotEmptyError(f"{audit_path.name} already exists: move it away; a rebuild never overwrites it")


def check_empty(state_dir: Path, database_url: str | None = None) -> None:
    """Raise :class:`HistoryNotEmptyError` unless ``state_dir`` holds no submissions and no audit log (the
    submissions in PostgreSQL when ``database_url`` is set)."""
    repo = open_repository(state_dir, database_url)
    try:
        _check_empty(repo, state_dir / AUDIT_NAME)
    finally:
        repo.close()


def restore(
    partitions: Sequence[Sequence[LocatedEvent]],
    *,
    state_dir: Path,
    topic: str,
    unreadable: int = 0,
    database_url: str | None = None,
) -> Restored:
    """Replay the events (per partition, in offset order) into the empty repository of ``state_dir`` and a new
    audit log there; approved submissions whose file is not in ``state_dir`` (restored from a backup) are
    moved to 'failed' (``history.unsendable``)."""
    audit_path = state_dir / AUDIT_NAME
    repo = open_repository(state_dir, database_url)
    try:
        _check_empty(repo, audit_path)
        replayed = replay(in_order(partitions))
        files_dir = WorkflowSettings(state_dir=state_dir).files_dir
        failed = unsendable(
            replayed.submissions.values(),
            file_held=lambda s: _file_held(files_dir / f"{s.submission_id}.csv", s.file_sha256),  # as file_path
            at=datetime.now(UTC),
        )
        for sub, _ in failed:
            replayed.submissions[sub.submission_id] = sub
        # One transaction; no outbox for the replayed steps (nothing re-published). The rebuild's own 'failed'
        # steps are queued in the outbox: the service publishes them at start, so the topic says so too.
        repo.save(list(replayed.submissions.values()), [event for _, event in failed])
    finally:
        repo.close()
    audit = AuditLog(audit_path)
    for located in replayed.applied:
        action, fields = audit_fields(located, topic=topic)
        audit.append(action, **fields)
    for sub, event in failed:
        audit.append(
            event.state.value,
            at=event.at.isoformat(),
            submission_id=sub.submission_id,
            la_code=sub.la_code,
            by=event.by,
            file_sha256=sub.file_sha256,
            detail=event.detail,
        )
    audit.append(
        "history_rebuilt",
        at=datetime.now(UTC).isoformat(),
        topic=topic,
        events_read=sum(len(p) for p in partitions) + unreadable,
        submissions=len(replayed.submissions),
        steps_applied=len(replayed.applied),
        duplicates=replayed.duplicates,
        refused=len(replayed.refused),
        unreadable=unreadable,
    )
    return Restored(replayed, verify_audit_log(audit_path), tuple(sub.submission_id for sub, _ in failed))


def _file_held(path: Path, sha256: str | None) -> bool:
    try:
        return sha256 is not None and sha256_of(path) == sha256
    except OSError:
        return False


async def rebuild_history(
    settings: SubmissionSettings, *, batch: int = 2000, on_progress: Progress | None = None
) -> HistoryReport:
    """Replay ``cld.submissions.v1`` into an empty repository and a new audit log; report what is missing."""
    topic = settings.topic(topics.SUBMISSIONS)
    check_empty(settings.state_dir, settings.database_url)  # before reading the whole topic
    reader = RetainedReader(settings, topic, batch=batch)
    by_partition: dict[int, list[LocatedEvent]] = {}
    unreadable: Counter[str] = Counter()
    async with reader:
        async for records in reader.records():
            for r in records:
                try:
                    event = SubmissionEvent.model_validate_json(r.value or b"")
                except ValidationError as exc:
                    unreadable[unreadable_reason(r.value, exc).value] += 1
                    continue
                by_partition.setdefault(r.partition, []).append(LocatedEvent(event, r.partition, r.offset))
            if on_progress is not None:
                on_progress(reader.read, reader.total)
    restored = restore(
        [by_partition[p] for p in sorted(by_partition)],
        state_dir=settings.state_dir,
        topic=topic,
        unreadable=sum(unreadable.values()),
        database_url=settings.database_url,
    )
    replayed, verified = restored.replayed, restored.audit
    return HistoryReport(
        topic=topic,
        events_read=reader.read,
        submissions=len(replayed.submissions),
        steps_applied=len(replayed.applied),
        duplicates=replayed.duplicates,
        audit_lines=verified.lines,
        audit_verified=verified.ok,
        refused=tuple(replayed.refused),
        unreadable_by_reason=dict(sorted(unreadable.items())),
        partitions=reader.coverage(),
        missing=missing_partitions(topic, reader.partitions, {}),
        failed_by_rebuild=restored.failed_by_rebuild,
    )
