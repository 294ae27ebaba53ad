"""The submission history and the audit chain come back from the lifecycle events alone (issue 12, item 4).

Submissions go through the service's lifecycle in ``TestKafkaBroker`` (a superseded version, one approved,
sent and acknowledged by a MESH-like transport, one left checked); the events it published on
``cld.submissions.v1`` are replayed (``rebuild_history.restore``) into an empty state directory, as after
losing the volume, and the rebuilt repository and audit chain are compared with the originals.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from cld_schemas import topics
from cld_schemas.events import SubmissionEvent
from cld_submission.adapters.audit_log import read_audit_log, verify_audit_log
from cld_submission.adapters.sqlite_repository import Repository
from cld_submission.adapters.transport.base import DeliveryState, DeliveryStatus, SendResult
from cld_submission.domain.history import LocatedEvent
from cld_submission.entrypoints.app import create_app
from cld_submission.entrypoints.rebuild_history import AUDIT_NAME, HistoryNotEmptyError, restore
from cld_submission.entrypoints.settings import SubmissionSettings
from tests.component.test_submission_service import (
    ADA,
    GRACE,
    PERIOD,
    Harness,
    operators_registry,
    policy_with_bases,
    rows,
)
from tests.support.builders import a_request_row
from tests.support.capture import capture

TOPIC = topics.SUBMISSIONS


class AcknowledgingTransport:
    """A MESH-like transport that accepts every file and reports it acknowledged at the first status call."""

    async def send(self, *, path: Path, filename: str, submission_id: str, local_id: str) -> SendResult:
        data = await asyncio.to_thread(path.read_bytes)
        return SendResult(
            transport="mesh",
            message_id=f"MSG-{local_id[:12]}",
            sent_at=datetime.now(UTC),
            bytes_sent=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    async def status(self, message_id: str) -> DeliveryStatus:
        return DeliveryStatus(message_id=message_id, state=DeliveryState.ACKNOWLEDGED, detail="acknowledged")


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = SubmissionSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        log_level="WARNING",
        state_dir=tmp_path / "state",
        consumer_batch_timeout_ms=1,
        ack_poll_seconds=0.01,
    )
    registry, keys = operators_registry()
    app = create_app(settings, transport=AcknowledgingTransport(), tenants=registry, policy=policy_with_bases())
    broker: KafkaBroker = app.state.broker
    events = capture(broker, TOPIC)
    async with TestKafkaBroker(broker), app.router.lifespan_context(app):
        asgi = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {keys[GRACE]}"}
        async with httpx.AsyncClient(transport=asgi, base_url="http://submission", headers=headers) as client:
            yield Harness(app, broker, client, events, tmp_path / "export", tmp_path / "state", keys)


async def _request(harness: Harness) -> dict[str, Any]:
    resp = await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    assert resp.status_code == 201, resp.text
    sub: dict[str, Any] = resp.json()["submission"]
    return sub


async def _a_year_of_submissions(harness: Harness) -> tuple[str, str, str]:
    """v1 requested, superseded by v2; v2 approved, sent and acknowledged; v3 requested and left checked."""
    for r in rows(4):
        await harness.send_record(r)
    v1 = await _request(harness)
    await harness.send_record(a_request_row(event_reference="NEW", la_person_unique_identifier="P-NEW"))
    v2 = await _request(harness)
    approved = await harness.client.post(f"/v1/submissions/{v2['submission_id']}/approve", json={"by": GRACE})
    assert approved.status_code == 200, approved.text
    async with asyncio.timeout(10):
        await harness.workflow.join()
    await harness.send_record(a_request_row(event_reference="LATE", la_person_unique_identifier="P-LATE"))
    v3 = await _request(harness)
    return v1["submission_id"], v2["submission_id"], v3["submission_id"]


def _as_read(harness: Harness) -> list[LocatedEvent]:
    """The published events as a rebuild reads them (one LA: one partition, offsets in publishing order)."""
    return [LocatedEvent(SubmissionEvent.model_validate(b), 0, i) for i, b in enumerate(harness.events.bodies)]


async def test_history_and_audit_chain_are_rebuilt_from_the_lifecycle_events(harness: Harness, tmp_path: Path) -> None:
    v1, v2, v3 = await _a_year_of_submissions(harness)
    assert harness.lifecycle(v2) == ["requested", "assembled", "checked", "approved", "sent", "acknowledged"]
    original = harness.workflow.history(None)
    original_audit = read_audit_log(harness.state_dir / AUDIT_NAME)
    events = _as_read(harness)
    events.insert(3, LocatedEvent(events[2].event, 0, 99))  # the outbox published 'checked' twice (a crash)

    rebuilt_dir = tmp_path / "rebuilt"  # the lost volume, replaced by an empty one
    restored = restore([events], state_dir=rebuilt_dir, topic=TOPIC)
    replayed, verified = restored.replayed, restored.audit

    assert replayed.duplicates == 1
    assert replayed.refused == []
    assert restored.failed_by_rebuild == ()  # nothing was approved and unsent
    repo = Repository(rebuilt_dir)
    try:
        rebuilt = repo.history()
        assert rebuilt == original  # states, versions, supersedes, approvals, file hashes, MESH receipts
        assert repo.pending_events() == []  # nothing queued to be published again
    finally:
        repo.close()
    by_id = {s.submission_id: s for s in rebuilt}
    assert (by_id[v1].state.value, by_id[v1].superseded_by) == ("superseded", v2)
    assert (by_id[v2].state.value, by_id[v2].approved_by, by_id[v2].transport) == ("acknowledged", GRACE, "mesh")
    assert by_id[v3].state.value == "checked"

    assert verified.ok
    assert verify_audit_log(rebuilt_dir / AUDIT_NAME).ok
    rebuilt_audit = read_audit_log(rebuilt_dir / AUDIT_NAME)
    steps = [(e["action"], e["submission_id"]) for e in rebuilt_audit if "submission_id" in e]
    assert steps == [(e.state.value, e.submission_id) for e in (x.event for x in _as_read(harness))]
    assert rebuilt_audit[-1]["action"] == "history_rebuilt"
    assert rebuilt_audit[-1]["duplicates"] == 1

    # Every lifecycle line of the original audit log has its rebuilt line with the same facts.
    rebuilt_line = {(e["action"], e["submission_id"]): e for e in rebuilt_audit if "submission_id" in e}
    compared = 0
    for line in original_audit:
        sid, action = line.get("submission_id"), line["action"]
        if action == "requested":
            assert {k: rebuilt_line[("requested", sid)].get(k) for k in ("by", "version", "supersedes")} == {
                k: line.get(k) for k in ("by", "version", "supersedes")
            }
            checked = rebuilt_line[("checked", sid)]
            assert (checked["file_sha256"], checked["rows"]) == (line["file_sha256"], line["rows"])
        elif action in ("approved", "superseded", "sent", "acknowledged"):
            same = ("by", "file_sha256", "rows", "superseded_by", "message_id", "transport")
            again = rebuilt_line[(action, sid)]
            assert {k: again.get(k) for k in same if k in line} == {k: line[k] for k in same if k in line}
        else:
            continue
        compared += 1
    assert compared == 3 + 1 + 1 + 2  # three requests, one supersession, one approval, sent and acknowledged


async def test_a_rebuild_never_writes_over_an_existing_history(harness: Harness, tmp_path: Path) -> None:
    await _a_year_of_submissions(harness)
    before = (harness.state_dir / AUDIT_NAME).read_bytes()
    with pytest.raises(HistoryNotEmptyError, match="already holds 3 submission"):
        restore([_as_read(harness)], state_dir=harness.state_dir, topic=TOPIC)
    assert (harness.state_dir / AUDIT_NAME).read_bytes() == before

    only_audit = tmp_path / "only-audit"
    only_audit.mkdir()
    (only_audit / AUDIT_NAME).write_bytes(before)
    with pytest.raises(HistoryNotEmptyError, match="already exists"):
        restore([_as_read(harness)], state_dir=only_audit, topic=TOPIC)


async def test_an_approved_submission_whose_file_is_lost_is_failed_and_says_so(
    harness: Harness, tmp_path: Path
) -> None:
    _, v2, _ = await _a_year_of_submissions(harness)
    events = _as_read(harness)
    upto = next(i for i, x in enumerate(events) if x.event.submission_id == v2 and x.event.state.value == "approved")
    before_sending = [events[: upto + 1]]  # the volume was lost before 'sent' was published

    kept = tmp_path / "files-restored"
    (kept / "files").mkdir(parents=True)  # the operator restored the submission files from a backup
    (kept / "files" / f"{v2}.csv").write_bytes((harness.state_dir / "files" / f"{v2}.csv").read_bytes())
    assert restore(before_sending, state_dir=kept, topic=TOPIC).failed_by_rebuild == ()

    lost = tmp_path / "files-lost"
    restored = restore(before_sending, state_dir=lost, topic=TOPIC)

    assert restored.failed_by_rebuild == (v2,)
    repo = Repository(lost)
    try:
        sub = repo.get(v2)
        assert sub is not None
        assert sub.state.value == "failed"
        assert sub.detail is not None
        assert "file was lost with the state volume" in sub.detail
        [(_, queued)] = repo.pending_events()  # the service publishes the step when it starts
        assert (queued.submission_id, queued.state.value, queued.by) == (v2, "failed", "cld-submission-rebuild")
    finally:
        repo.close()
    assert restored.audit.ok
    last_step = [e for e in read_audit_log(lost / AUDIT_NAME) if e.get("submission_id") == v2][-1]
    assert (last_step["action"], last_step["by"]) == ("failed", "cld-submission-rebuild")
