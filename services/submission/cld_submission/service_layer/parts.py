"""What every use case of the submission service layer shares: the injected parts (record store, repository,
audit log, transport, event publisher, metrics, clock), their settings, the queries, and the lifecycle events out
(the repository's outbox, published in order) with the gauges refreshed after each change.

No Kafka, HTTP or environment here: the composition root (``entrypoints.app.create_app``) injects every part.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cld_governance.loaders import default_policy
from cld_governance.sharing import SharingPolicy
from cld_runtime.files import private_dir, tighten
from cld_schemas.events import SubmissionEvent, SubmissionState

from ..adapters.audit_log import AuditLog
from ..adapters.metrics import SubmissionMetrics
from ..adapters.ports import RecordStore, SubmissionsRepository
from ..adapters.storage import StorageHealth
from ..adapters.transport import Transport
from ..domain.checks import (
    PartialThresholds,
)
from ..domain.deadlines import DeadlineRule, covers_next_deadline, seconds_remaining
from ..domain.lifecycle import (
    DeliveryProblem,
    Submission,
)

S = SubmissionState
SERVICE_ACTOR: Final = "cld-submission"
Publish = Callable[[SubmissionEvent], Awaitable[None]]


class SubmissionNotFoundError(LookupError):
    """No submission with that id."""


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


def _now() -> datetime:
    return datetime.now(UTC)


class WorkflowParts:
    """The parts and shared state of the use cases (``SubmissionWorkflow`` combines them)."""

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

    # -- queries --------------------------------------------------------------------------------------

    def get(self, submission_id: str) -> Submission:
        sub = self.repo.get(submission_id)
        if sub is None:
            raise SubmissionNotFoundError(submission_id)
        return sub

    def history(self, la_code: str | None) -> list[Submission]:
        return self.repo.history(la_code)

    def file_path(self, sub: Submission) -> Path:
        return self.settings.files_dir / f"{sub.submission_id}.csv"

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
