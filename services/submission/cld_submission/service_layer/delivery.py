"""Delivery: sending an approved submission through the transport, tracking its delivery status until it is
acknowledged or failed, resuming both after a restart, and keeping the last transport problem for the status API.

Crash safety of sending. 'approved' is persisted before the transport is called and 'sent' (with the MESH
message id) right after it returns; the MESH local id is the submission id. After a crash anywhere between
'approved' and 'acknowledged', ``resume`` picks the submission up again: an 'approved' one is handed to the
transport again, which finds the message already sent under that local id and returns it instead of sending
a second one; a 'sent' one goes back to polling its delivery status.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextvars import ContextVar
from datetime import timedelta
from typing import Final

from cld_schemas.events import SubmissionState

from ..adapters.submission_file import sha256_of
from ..adapters.transport import DeliveryState, FileExportTransport, TransportError
from ..domain.lifecycle import (
    DeliveryProblem,
    Submission,
    advance,
)
from .parts import SERVICE_ACTOR, S, WorkflowParts

_DELIVERING: ContextVar[str | None] = ContextVar("cld_submission_delivering", default=None)
SEND_CLAIM_LEASE: Final = timedelta(seconds=60)
"""How long a send claim holds without being renewed: the sender renews it every ``SEND_CLAIM_RENEW_SECONDS``
while the hand-over runs, so an instance killed while sending leaves a claim that lapses within a minute; then
another instance (or the restarted one) takes it over (``pick_up_approved``), and the transport's local-id check
finds a hand-over that did happen, so the file is not sent twice."""
SEND_CLAIM_RENEW_SECONDS: Final = 15.0
"""The submission a delivery task works on (the transport's retry callback does not know it)."""


def describe_transport_error(operation: str, exc: BaseException) -> str:
    """A transport error in a few words: the operation, the error type and, for our transport errors (MESH's
    HTTP status and reason, fixed texts), the message. Never a file's content."""
    text = f"{operation}: {type(exc).__name__}"
    if isinstance(exc, TransportError) and str(exc):
        text += f" ({str(exc)[:200]})"
    return text


class Delivery(WorkflowParts):
    """The delivery use cases."""

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
        claimed = await asyncio.to_thread(
            self.repo.claim_send, sub.submission_id, instance=self.instance_id, lease=SEND_CLAIM_LEASE
        )
        if not claimed:  # another instance is sending it: it records the outcome, every instance reads it
            self.log.info("submission being sent by another instance", extra={"submission_id": sub.submission_id})
            return self.get(sub.submission_id)
        path = self.file_path(sub)
        on_disk = await asyncio.to_thread(sha256_of, path)
        if on_disk != sub.file_sha256:
            self.metrics.mesh_send.labels("failed").inc()
            return await self._step(
                sub, S.FAILED, audit_action="send_failed", detail="assembled file changed on disk; not sent"
            )
        assert sub.file_name is not None
        heartbeat = asyncio.create_task(self._renew_claim(sub.submission_id))
        try:
            result = await self.transport.send(
                path=path, filename=sub.file_name, submission_id=sub.submission_id, local_id=sub.local_id
            )
        except TransportError as exc:
            self.metrics.mesh_send.labels("failed").inc()
            self._note_problem(sub.submission_id, describe_transport_error("send", exc), None)  # no more retries
            return await self._step(sub, S.FAILED, audit_action="send_failed", detail=str(exc)[:500])
        finally:
            heartbeat.cancel()
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

    async def _renew_claim(self, submission_id: str) -> None:
        """Keep this instance's send claim alive while a hand-over runs (cancelled when it ends)."""
        while True:
            await asyncio.sleep(SEND_CLAIM_RENEW_SECONDS)  # a renewal period, not synchronisation
            try:
                renewed = await asyncio.to_thread(
                    self.repo.claim_send, submission_id, instance=self.instance_id, lease=SEND_CLAIM_LEASE
                )
            except Exception:
                self.log.warning("send claim not renewed", extra={"submission_id": submission_id}, exc_info=True)
                continue
            if not renewed:  # lapsed and taken over: the transport's local-id check keeps it to one hand-over
                self.log.warning("send claim taken over by another instance", extra={"submission_id": submission_id})
                return

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
