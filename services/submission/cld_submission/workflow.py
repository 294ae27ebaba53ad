"""The submission service layer: records in, requests, approvals, sending and delivery tracking.

No Kafka, HTTP or environment here: the composition root (``service.create_app``) injects the state store,
repository, audit log, transport, an event publisher and metrics. Heavy work (assembling a 500k-row file)
runs in a worker thread; the event loop only orchestrates.

Crash safety of sending. 'approved' is persisted before the transport is called and 'sent' (with the MESH
message id) right after it returns; the MESH local id is the submission id. After a crash anywhere between
'approved' and 'acknowledged', ``resume`` picks the submission up again: an 'approved' one is handed to the
transport again, which finds the message already sent under that local id and returns it instead of sending
a second one; a 'sent' one goes back to polling its delivery status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final, TypeVar

from pydantic import BaseModel, ConfigDict

from cld_governance.loaders import default_policy
from cld_governance.sharing import Form, SharingPolicy
from cld_runtime.files import private_dir, tighten
from cld_schemas.events import RecordPseudonymised, SubmissionEvent, SubmissionState

from .assemble import AssembledFile, sha256_of, write_submission_file
from .audit import AuditLog
from .checks import (
    CheckResult,
    DatasetChecker,
    Diff,
    FindingCount,
    LeftOut,
    ManifestEntry,
    PartialThresholds,
    Severity,
    SubmissionProfile,
    compare_with_previous,
    diff_checks,
    diff_manifests,
    left_out_check,
    left_out_of,
)
from .deadlines import DeadlineRule, covers_next_deadline, seconds_remaining
from .exports import ExportResult, run_export
from .identity import Kind
from .lifecycle import (
    DeliveryProblem,
    Existing,
    Submission,
    TransitionRefusedError,
    advance,
    approve,
    check_period,
    decide_request,
    new_submission,
)
from .metrics import SubmissionMetrics
from .ports import RecordStore, SubmissionsRepository
from .repository import RowFindings
from .state import Applied, Incoming, StoredRecord
from .storage import StorageHealth, is_storage_fault
from .transport import (
    DeliveryState,
    FileExportTransport,
    Transport,
    TransportError,
)

S = SubmissionState
SERVICE_ACTOR: Final = "cld-submission"
SEND_CLAIM_LEASE: Final = timedelta(minutes=10)
"""How long a send claim holds: an instance killed while sending leaves its claim, which another instance (or the
restarted one) may take over after this (``resume``); the transport's local-id check finds a hand-over that did
happen, so the file is not sent twice."""
_DELIVERING: ContextVar[str | None] = ContextVar("cld_submission_delivering", default=None)
"""The submission a delivery task works on (the transport's retry callback does not know it)."""


def describe_transport_error(operation: str, exc: BaseException) -> str:
    """A transport error in a few words: the operation, the error type and, for our transport errors (MESH's
    HTTP status and reason, fixed texts), the message. Never a file's content."""
    text = f"{operation}: {type(exc).__name__}"
    if isinstance(exc, TransportError) and str(exc):
        text += f" ({str(exc)[:200]})"
    return text


Publish = Callable[[SubmissionEvent], Awaitable[None]]


class SubmissionNotFoundError(LookupError):
    """No submission with that id."""


class DQSummary(BaseModel):
    """What an operator sees before approving: record-level failures, dataset checks, diff. No values."""

    model_config = ConfigDict(frozen=True)

    submission_id: str
    la_code: str
    period_start: date
    period_end: date
    rows: int
    file_sha256: str
    size_bytes: int
    rows_with_failures: int
    opt_out_rows: int
    record_findings: list[FindingCount]
    dataset_checks: list[CheckResult]
    errors: int
    warnings: int
    profile: SubmissionProfile
    diff: Diff | None
    previous_submission_id: str | None
    left_out: LeftOut | None = None
    """Held records of the LA not in the file (outside the period by the scope rules), by reason."""
    row_findings_kept: bool = False
    """True when each failed row's findings were kept with the submission (its DQ report page lists them);
    False for submissions assembled before they were kept (the page then shows the counts by field and rule)."""


@dataclass(frozen=True)
class WorkflowSettings:
    state_dir: Path
    ack_timeout: timedelta = timedelta(days=5)
    ack_poll_interval: float = 60.0
    deadline_rule: DeadlineRule = field(default_factory=DeadlineRule)
    partial: PartialThresholds = field(default_factory=PartialThresholds)
    la_codes: tuple[str, ...] = ()

    @property
    def files_dir(self) -> Path:
        return self.state_dir / "files"

    @property
    def exports_dir(self) -> Path:
        """Export files while they are streamed to the caller (deleted afterwards; no copy is kept)."""
        return self.state_dir / "exports-outgoing"


@dataclass(frozen=True)
class _Built:
    file: AssembledFile
    checker: DatasetChecker


def _now() -> datetime:
    return datetime.now(UTC)


_Item = TypeVar("_Item")
_T = TypeVar("_T")
_Msg = TypeVar("_Msg")


def is_transient(exc: BaseException) -> bool:
    """Whether a storage error may pass on a retry (the database is locked or busy, the disk full or read-only,
    disk I/O, out of memory, a damaged or unreadable database file) rather than being caused by the record: then
    nothing is dead-lettered and the batch is retried (``storage.is_storage_fault``). IntegrityError, ValueError
    and the like are the record's own."""
    return is_storage_fault(exc)


async def store_or_split(
    items: Sequence[_Item],
    store: Callable[[list[_Item]], Awaitable[object]],
    reject: Callable[[_Item, Exception], Awaitable[None]],
) -> list[_Item]:
    """Store a consumed batch so that one bad-but-readable record cannot stall its partition.

    The batch is stored in one transaction. When that fails with an error that is not transient, each record
    is stored again on its own, in its own transaction, in order: a record that fails on its own is handed to
    ``reject`` (the caller dead-letters it) and the others are stored. A transient error (``is_transient``),
    in the batch or in the split, is re-raised so the whole batch is redelivered: nothing is lost, and what
    was already stored is recognised again as a repeat. Returns the rejected records."""
    batch = list(items)
    try:
        await store(batch)
        return []
    except Exception as exc:
        if is_transient(exc):
            raise
    rejected: list[_Item] = []
    for item in batch:
        try:
            await store([item])
        except Exception as exc:
            if is_transient(exc):
                raise
            await reject(item, exc)
            rejected.append(item)
    return rejected


class SubmissionWorkflow:
    def __init__(
        self,
        *,
        settings: WorkflowSettings,
        state: RecordStore,
        repo: SubmissionsRepository,
        audit: AuditLog,
        transport: Transport,
        publish: Publish,
        metrics: SubmissionMetrics,
        log: logging.Logger | None = None,
        clock: Callable[[], datetime] = _now,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        policy: SharingPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.repo = repo
        self.audit = audit
        self.transport = transport
        self._publish = publish
        self.metrics = metrics
        self.log = log or logging.getLogger("cld.submission")
        self._clock = clock
        self._new_id = new_id
        self.policy = policy or default_policy()
        self._lock = asyncio.Lock()
        self._outbox_lock = asyncio.Lock()
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """Who holds a send claim (``SubmissionsRepository.claim_send``): one instance among any number."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._problems: dict[str, DeliveryProblem] = {}
        private_dir(settings.files_dir)
        for old in settings.files_dir.iterdir():  # submission files written by an earlier version (0644)
            tighten(old)
        self.storage = StorageHealth(settings.state_dir, log=self.log, on_fault=self._release_storage)
        """Readiness of the state storage; the consumers report each write's outcome to it (``_stored``)."""

    def _release_storage(self) -> None:
        """After a storage fault: close both databases, so that no file stays open on a full or read-only file
        system (and a file system can be remounted); the next write opens them again."""
        self.state.release()
        self.repo.release()

    async def _stored(self, write: Awaitable[_T]) -> _T:
        """Run a consumer's write and report its outcome to ``storage``: after a storage fault, wait (bounded
        backoff) and re-raise, so the batch is not acknowledged and Kafka hands it back; nothing is lost."""
        try:
            result = await write
        except Exception as exc:
            if is_storage_fault(exc):
                self.storage.failed(exc)
                await self.storage.backoff()
            raise
        self.storage.ok()
        return result

    # -- records in -----------------------------------------------------------------------------------

    async def on_records(self, items: list[Incoming]) -> list[Applied]:
        return await asyncio.to_thread(self.state.apply_many, items)

    async def on_records_or_split(
        self, items: Sequence[tuple[_Msg, Incoming]], reject: Callable[[_Msg, Exception], Awaitable[None]]
    ) -> list[_Msg]:
        """``on_records`` for consumed (message, record) pairs, split on failure (``store_or_split``): a record
        whose storage fails on its own goes to ``reject`` with its message. Returns the rejected messages."""

        async def store(batch: list[tuple[_Msg, Incoming]]) -> object:
            return await self.on_records([i for _, i in batch])

        async def rejected(pair: tuple[_Msg, Incoming], exc: Exception) -> None:
            await reject(pair[0], exc)

        return [m for m, _ in await self._stored(store_or_split(items, store, rejected))]

    async def on_pseudonymised_or_split(
        self,
        items: Sequence[tuple[_Msg, RecordPseudonymised]],
        reject: Callable[[_Msg, Exception], Awaitable[None]],
    ) -> list[_Msg]:
        """The pseudonymised records into the record state (``StateStore.apply_pseudonymised``), split on
        failure like ``on_records_or_split``."""

        async def store(batch: list[tuple[_Msg, RecordPseudonymised]]) -> object:
            return await asyncio.to_thread(self.state.apply_pseudonymised, [e for _, e in batch])

        async def rejected(pair: tuple[_Msg, RecordPseudonymised], exc: Exception) -> None:
            await reject(pair[0], exc)

        return [m for m, _ in await self._stored(store_or_split(items, store, rejected))]

    # -- queries --------------------------------------------------------------------------------------

    def get(self, submission_id: str) -> Submission:
        sub = self.repo.get(submission_id)
        if sub is None:
            raise SubmissionNotFoundError(submission_id)
        return sub

    def with_delivery(self, sub: Submission) -> Submission:
        """``sub`` with its delivery problem (the last transport error and the next retry), if it has one."""
        problem = self._problems.get(sub.submission_id)
        return sub if problem is None else sub.model_copy(update={"delivery_problem": problem})

    def on_transport_retry(self, operation: str, attempt: int, delay: float, exc: BaseException) -> None:
        """The transport's retry callback (``MeshTransport(on_retry=...)``): remember the error and when the next
        attempt is due, for the submission whose delivery task is running."""
        submission_id = _DELIVERING.get()
        if submission_id is not None:
            self._note_problem(submission_id, describe_transport_error(operation, exc), delay)

    def _note_problem(self, submission_id: str, error: str, delay: float | None) -> None:
        now = self._clock()
        previous = self._problems.get(submission_id)
        self._problems[submission_id] = DeliveryProblem(
            error=error,
            at=now,
            next_retry_at=now + timedelta(seconds=delay) if delay is not None else None,
            attempts=previous.attempts + 1 if previous is not None else 1,
        )

    def summary(self, submission_id: str) -> DQSummary:
        self.get(submission_id)
        body = self.repo.get_summary(submission_id)
        if body is None:
            raise SubmissionNotFoundError(submission_id)
        return DQSummary.model_validate_json(body)

    def report_page(self, submission_id: str) -> bytes:
        """The submission's DQ report as one self-contained HTML page (``report_page.py``). Blocking: run it in a
        worker thread."""
        from .report_page import render_submission_report  # the page imports this module's DQSummary

        sub = self.get(submission_id)
        summary = self.summary(submission_id)
        return render_submission_report(sub, summary, self.repo.iter_row_findings(submission_id))

    def history(self, la_code: str | None) -> list[Submission]:
        return self.repo.history(la_code)

    def file_path(self, sub: Submission) -> Path:
        return self.settings.files_dir / f"{sub.submission_id}.csv"

    # -- request --------------------------------------------------------------------------------------

    async def request(
        self, *, la_code: str, period_start: date, period_end: date, requested_by: str
    ) -> tuple[Submission, bool]:
        """Assemble, check and record a submission; returns (submission, created). Idempotent by content."""
        if not requested_by.strip():
            raise TransitionRefusedError("a submission must name who requested it")
        check_period(period_start, period_end, today=self._clock().date())  # PeriodError: 422
        async with self._lock:
            new_id = self._new_id()
            path = self.settings.files_dir / f"{new_id}.csv"
            today = self._clock().date()
            try:
                built = await asyncio.to_thread(self._build, new_id, path, la_code, period_start, period_end, today)
                history = self.repo.history(la_code)
                decision = decide_request(
                    history,
                    la_code=la_code,
                    period_start=period_start,
                    period_end=period_end,
                    file_sha256=built.file.sha256,
                )
            except BaseException:
                await asyncio.to_thread(self._discard, new_id, path)
                raise
            if isinstance(decision, Existing):
                await asyncio.to_thread(self._discard, new_id, path)
                existing = decision.submission
                self.audit.append(
                    "request_repeated",
                    submission_id=existing.submission_id,
                    la_code=la_code,
                    by=requested_by,
                    file_sha256=built.file.sha256,
                    rows=built.file.rows,
                    detail="same LA, period and content: the existing submission is returned",
                )
                return existing, False

            previous = self._previous_sent(history)
            diff: Diff | None = None
            prev_profile: SubmissionProfile | None = None
            if previous is not None:
                diff = await asyncio.to_thread(
                    lambda: diff_manifests(
                        self.repo.iter_manifest(previous.submission_id),
                        self.repo.iter_manifest(new_id),
                        previous_submission_id=previous.submission_id,
                    )
                )
                prev_body = self.repo.get_summary(previous.submission_id)
                if prev_body is not None:
                    prev_profile = DQSummary.model_validate_json(prev_body).profile
            profile = built.checker.profile()
            left_out = await asyncio.to_thread(
                lambda: left_out_of(
                    self.state.iter_left_out(la_code, period_start, period_end),
                    in_file=built.file.rows,
                    period_start=period_start,
                    period_end=period_end,
                )
            )
            left_check = left_out_check(left_out)
            checks = [
                *built.checker.finish(),
                *([left_check] if left_check is not None else []),
                *compare_with_previous(profile, prev_profile, self.settings.partial),
                *(diff_checks(diff) if diff is not None else []),
            ]
            errors = sum(c.severity is Severity.ERROR for c in checks)
            warnings = sum(c.severity is Severity.WARNING for c in checks)
            failures = next((c.count for c in checks if c.id == "DS-RECORD-FAILURES"), 0)
            summary = DQSummary(
                submission_id=new_id,
                la_code=la_code,
                period_start=period_start,
                period_end=period_end,
                rows=built.file.rows,
                file_sha256=built.file.sha256,
                size_bytes=built.file.size_bytes,
                rows_with_failures=failures,
                opt_out_rows=built.file.opt_out_rows,
                record_findings=built.checker.record_findings(),
                dataset_checks=checks,
                errors=errors,
                warnings=warnings,
                profile=profile,
                diff=diff,
                previous_submission_id=previous.submission_id if previous else None,
                left_out=left_out,
                row_findings_kept=True,
            )
            self.repo.put_summary(new_id, summary.model_dump_json())

            at = self._clock()
            sub, e1 = new_submission(
                submission_id=new_id,
                la_code=la_code,
                period_start=period_start,
                period_end=period_end,
                requested_by=requested_by,
                at=at,
                version=decision.version,
                supersedes=decision.supersedes,
            )
            file_name = f"CLD_{la_code}_{period_start:%Y%m%d}_{period_end:%Y%m%d}_v{decision.version}_{new_id[:8]}.csv"
            sub, e2 = advance(
                sub,
                S.ASSEMBLED,
                at=at,
                by=SERVICE_ACTOR,
                file_sha256=built.file.sha256,
                rows=built.file.rows,
                size_bytes=built.file.size_bytes,
                file_name=file_name,
            )
            sub, e3 = advance(
                sub,
                S.CHECKED,
                at=at,
                by=SERVICE_ACTOR,
                detail=f"{errors} dataset error(s), {warnings} warning(s); "
                f"{failures} row(s) with record-level failures (included)",
            )
            changed = [sub]
            events = [e1, e2, e3]
            for old in decision.supersede:
                old_new, ev = advance(
                    old,
                    S.SUPERSEDED,
                    at=at,
                    by=requested_by,
                    superseded_by=new_id,
                    detail=f"superseded by version {decision.version} ({new_id})",
                )
                changed.append(old_new)
                events.append(ev)
            self.repo.save(changed, events)
            self.audit.append(
                "requested",
                submission_id=new_id,
                la_code=la_code,
                period_start=period_start.isoformat(),
                period_end=period_end.isoformat(),
                by=requested_by,
                version=decision.version,
                supersedes=decision.supersedes,
                file_sha256=built.file.sha256,
                rows=built.file.rows,
                dataset_errors=errors,
                dataset_warnings=warnings,
                rows_with_failures=failures,
            )
            for old in decision.supersede:
                self.audit.append(
                    "superseded",
                    submission_id=old.submission_id,
                    la_code=la_code,
                    by=requested_by,
                    superseded_by=new_id,
                )
            self.metrics.observe(events)
        await self.after_change()
        return sub, True

    def _build(self, new_id: str, path: Path, la_code: str, start: date, end: date, today: date) -> _Built:
        checker = DatasetChecker(period_start=start, period_end=end, import_date=today)
        with self.repo.manifest_session(new_id) as manifest:
            row = 0

            def on_row(r: StoredRecord) -> None:
                nonlocal row
                row += 1  # the data row of the file, as the checks number it (1 = first after the header)
                checker.add(r)
                if r.findings:
                    notes = r.finding_notes if len(r.finding_notes) == len(r.findings) else ()
                    manifest.add_row_findings(
                        RowFindings(
                            row,
                            r.record.get("event_reference"),
                            [
                                (fld, rule, validity, *(notes[i] if notes else ("", "", "")))
                                for i, (fld, rule, validity) in enumerate(r.findings)
                            ],
                        )
                    )
                open_service = r.kind is Kind.SERVICE and (r.derived_end is None or r.derived_end > end)
                manifest.add(
                    ManifestEntry(r.record_key, r.content_hash, open_service),
                    event_id=r.event_id,
                    source=r.source,
                    opt_outs=",".join(sorted(f.value for f in r.opt_outs)),
                )

            file = write_submission_file(
                self.state.iter_in_scope(la_code, start, end),
                path,
                period_start=start,
                period_end=end,
                on_row=on_row,
            )
        return _Built(file=file, checker=checker)

    def _discard(self, new_id: str, path: Path) -> None:
        self.repo.delete_manifest(new_id)
        path.unlink(missing_ok=True)

    @staticmethod
    def _previous_sent(history: list[Submission]) -> Submission | None:
        sent = [s for s in history if s.state in (S.SENT, S.ACKNOWLEDGED)]
        return max(sent, key=lambda s: (s.updated_at, s.version)) if sent else None

    # -- approve and send -----------------------------------------------------------------------------

    async def approve(self, submission_id: str, *, by: str, accept_errors: bool = False) -> Submission:
        async with self._lock:
            sub = self.get(submission_id)
            summary = self.summary(submission_id)
            if sub.state is S.CHECKED and summary.errors and not accept_errors:
                raise TransitionRefusedError(
                    f"{summary.errors} dataset check(s) at error level; review them and approve with "
                    "accept_errors to send anyway"
                )
            if sub.state is S.CHECKED:
                on_disk = await asyncio.to_thread(sha256_of, self.file_path(sub))
                if on_disk != sub.file_sha256:
                    raise TransitionRefusedError("the assembled file on disk does not match its recorded SHA-256")
            new, ev = approve(sub, by=by, at=self._clock())
            if not self.repo.save_if(new, ev, expected=sub.state):
                # Another instance moved it in the meantime (approved it too): answer as a second approval would.
                approve(self.get(submission_id), by=by, at=self._clock())  # raises as a second approval does
                raise TransitionRefusedError(f"submission {submission_id} changed while being approved")
            self.audit.append(
                "approved",
                submission_id=submission_id,
                la_code=new.la_code,
                by=new.approved_by,
                file_sha256=new.file_sha256,
                rows=new.rows,
                accepted_errors=summary.errors if accept_errors else 0,
            )
            self.metrics.observe([ev])
        await self.after_change()
        self._start_delivery(new.submission_id)
        return new

    # -- exports to other recipients -----------------------------------------------------------------

    async def export(
        self, submission_id: str, *, recipient_id: str, requested_by: str, form: Form | None = None
    ) -> ExportResult:
        """Decide (sharing policy), audit and write an export of this submission's rows to a recipient other
        than NHS England (``exports.run_export``). The caller streams ``result.path`` and deletes it."""
        sub = self.get(submission_id)
        return await asyncio.to_thread(
            run_export,
            sub=sub,
            submission_file=self.file_path(sub),
            recipient_id=recipient_id,
            requested_by=requested_by,
            requested_form=form,
            policy=self.policy,
            state=self.state,
            repo=self.repo,
            audit=self.audit,
            out_dir=self.settings.exports_dir,
            export_id=self._new_id(),
            at=self._clock(),
        )

    def audit_denied(
        self, *, operator: str, action: str, la_code: str, reason: str, submission_id: str | None = None
    ) -> None:
        """Record a refused operator action (authenticated but out of scope or not permitted)."""
        self.audit.append(
            "access_denied", submission_id=submission_id, la_code=la_code, by=operator, request=action, reason=reason
        )

    def _start_delivery(self, submission_id: str) -> None:
        task = self._tasks.get(submission_id)
        if task is not None and not task.done():
            return
        task = asyncio.create_task(self._deliver(submission_id), name=f"deliver-{submission_id}")
        self._tasks[submission_id] = task

    async def resume(self) -> None:
        """After a restart: publish queued events, and carry on with every approved or sent submission."""
        await self.after_change()
        for sub in self.repo.in_states([S.APPROVED, S.SENT]):
            self.log.info("resuming delivery", extra={"submission_id": sub.submission_id, "state": sub.state.value})
            self._start_delivery(sub.submission_id)

    def pick_up_approved(self) -> None:
        """Start delivery of approved submissions no task here is delivering (periodically: one whose sender was
        killed is sent once its claim lapses, by whichever instance claims it first)."""
        for sub in self.repo.in_states([S.APPROVED]):
            self._start_delivery(sub.submission_id)

    async def join(self) -> None:
        """Wait for the delivery tasks running now (tests wrap this in ``asyncio.timeout``)."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        for t in self._tasks.values():
            t.cancel()
        for t in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _step(self, sub: Submission, to: SubmissionState, *, audit_action: str, **changes: object) -> Submission:
        async with self._lock:
            current = self.get(sub.submission_id)  # the persisted state is the truth
            new, ev = advance(current, to, at=self._clock(), by=SERVICE_ACTOR, **changes)  # type: ignore[arg-type]
            if not self.repo.save_if(new, ev, expected=current.state):
                # Another instance moved it first (it tracked, sent or retried it at the same moment): its step
                # stands, this one is dropped (no second event, audit entry or metric).
                self.log.info(
                    "submission moved by another instance",
                    extra={"submission_id": sub.submission_id, "state": to.value},
                )
                return self.get(sub.submission_id)
            self.audit.append(
                audit_action,
                submission_id=new.submission_id,
                la_code=new.la_code,
                file_sha256=new.file_sha256,
                rows=new.rows,
                message_id=new.message_id,
                transport=new.transport,
                outcome=to.value,
                detail=new.detail,
            )
            self.metrics.observe([ev])
        await self.after_change()
        return new

    async def _deliver(self, submission_id: str) -> None:
        _DELIVERING.set(submission_id)  # this task's own context
        try:
            sub = self.get(submission_id)
            if sub.state is S.APPROVED:
                sub = await self._send(sub)
            if sub.state is S.SENT and not isinstance(self.transport, FileExportTransport):
                await self._track(sub)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("delivery task failed", extra={"submission_id": submission_id})

    async def _send(self, sub: Submission) -> Submission:
        path = self.file_path(sub)
        on_disk = await asyncio.to_thread(sha256_of, path)
        if on_disk != sub.file_sha256:
            self.metrics.mesh_send.labels("failed").inc()
            return await self._step(
                sub, S.FAILED, audit_action="send_failed", detail="assembled file changed on disk; not sent"
            )
        assert sub.file_name is not None
        claimed = await asyncio.to_thread(
            self.repo.claim_send, sub.submission_id, instance=self.instance_id, lease=SEND_CLAIM_LEASE
        )
        if not claimed:  # another instance is sending it: it records the outcome, every instance reads it
            self.log.info("submission being sent by another instance", extra={"submission_id": sub.submission_id})
            return self.get(sub.submission_id)
        try:
            result = await self.transport.send(
                path=path, filename=sub.file_name, submission_id=sub.submission_id, local_id=sub.local_id
            )
        except TransportError as exc:
            self.metrics.mesh_send.labels("failed").inc()
            self._note_problem(sub.submission_id, describe_transport_error("send", exc), None)  # no more retries
            return await self._step(sub, S.FAILED, audit_action="send_failed", detail=str(exc)[:500])
        self._problems.pop(sub.submission_id, None)
        self.metrics.mesh_send.labels("success").inc()
        return await self._step(
            sub,
            S.SENT,
            audit_action="sent",
            message_id=result.message_id,
            transport=result.transport,
            detail=(
                "an earlier hand-over under this local id was found; not sent again"
                if result.deduplicated
                else f"{result.bytes_sent} bytes handed to {result.transport}"
            ),
        )

    async def _track(self, sub: Submission) -> None:
        assert sub.message_id is not None
        deadline = sub.updated_at + self.settings.ack_timeout
        while True:
            try:
                status = await self.transport.status(sub.message_id)
            except TransportError as exc:
                self.log.warning(
                    "delivery status not available",
                    extra={"submission_id": sub.submission_id, "error": type(exc).__name__},
                )
                self._note_problem(
                    sub.submission_id, describe_transport_error("status", exc), self.settings.ack_poll_interval
                )
            else:
                self._problems.pop(sub.submission_id, None)
                if status.state is DeliveryState.ACKNOWLEDGED:
                    self.metrics.mesh_acknowledged.labels("acknowledged").inc()
                    await self._step(sub, S.ACKNOWLEDGED, audit_action="acknowledged", detail=status.detail[:300])
                    return
                if status.state is DeliveryState.FAILED:
                    self.metrics.mesh_acknowledged.labels("failed").inc()
                    await self._step(sub, S.FAILED, audit_action="delivery_failed", detail=status.detail[:300])
                    return
            remaining = (deadline - self._clock()).total_seconds()
            if remaining <= 0:
                self.metrics.mesh_acknowledged.labels("failed").inc()
                await self._step(
                    sub,
                    S.FAILED,
                    audit_action="delivery_failed",
                    detail=f"not acknowledged within {self.settings.ack_timeout}",
                )
                return
            await asyncio.sleep(min(self.settings.ack_poll_interval, remaining))  # a polling period

    # -- events out and gauges ------------------------------------------------------------------------

    async def after_change(self) -> None:
        await self.drain_outbox()
        self.refresh_gauges()

    async def drain_outbox(self) -> int:
        """Publish queued lifecycle events in order; stops at the first failure (retried later)."""
        sent = 0
        async with self._outbox_lock:
            with self.repo.outbox_drainer() as mine:
                if not mine:  # another instance is draining it now (it publishes what this one queued too)
                    return 0
                while batch := self.repo.pending_events():
                    for seq, event in batch:
                        try:
                            await self._publish(event)
                        except Exception:
                            self.log.warning("publishing a submission event failed; will retry", exc_info=True)
                            return sent
                        self.repo.mark_published([seq])
                        sent += 1
        return sent

    def refresh_gauges(self) -> None:
        la_codes = set(self.settings.la_codes) | set(self.state.la_codes())
        history = self.repo.history()
        la_codes |= {s.la_code for s in history}
        self.metrics.set_counts(self.repo.counts(), la_codes)
        self.metrics.set_sent(history, la_codes)
        now = self._clock()
        today = now.date()
        remaining = seconds_remaining(now, self.settings.deadline_rule)
        for la in la_codes:
            self.metrics.deadline_remaining.labels(la).set(remaining)
            covered = covers_next_deadline(today, self.settings.deadline_rule, (s for s in history if s.la_code == la))
            self.metrics.approved_for_next.labels(la).set(1 if covered else 0)
