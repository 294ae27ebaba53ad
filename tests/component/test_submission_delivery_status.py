"""A transport outage is visible in the submission's status (issue 10, finding 11): while MESH keeps failing,
``GET /v1/submissions/{id}/status`` (``cld submission status``) shows the last transport error and the next
retry; once the hand-over succeeds they are gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from cld_schemas import topics
from cld_submission.adapters.transport import FileExportTransport, SendResult
from cld_submission.adapters.transport.base import TransportError
from cld_submission.entrypoints.app import create_app
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
from tests.support.capture import capture


class FlakyTransport(FileExportTransport):
    """MESH down: every upload attempt fails (reported through the retry callback, as ``MeshTransport`` does)
    until ``restore()``."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.on_retry = lambda op, attempt, delay, exc: None
        self.down = asyncio.Event()
        self.up = asyncio.Event()

    async def send(self, *, path: Path, filename: str, submission_id: str, local_id: str) -> SendResult:
        for attempt in (1, 2):
            self.on_retry("upload", attempt, 30.0, TransportError("HTTP 503 from MESH: Service Unavailable"))
        self.down.set()
        await self.up.wait()
        return await super().send(path=path, filename=filename, submission_id=submission_id, local_id=local_id)


@pytest.fixture
async def flaky(tmp_path: Path) -> AsyncIterator[tuple[Harness, FlakyTransport]]:
    settings = SubmissionSettings(
        kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING", state_dir=tmp_path / "state"
    )
    transport = FlakyTransport(tmp_path / "export")
    registry, keys = operators_registry()
    app = create_app(settings, transport=transport, tenants=registry, policy=policy_with_bases())
    transport.on_retry = app.state.workflow.on_transport_retry  # what build_transport wires for MESH
    broker: KafkaBroker = app.state.broker
    events = capture(broker, topics.SUBMISSIONS)
    async with TestKafkaBroker(broker), app.router.lifespan_context(app):
        asgi = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {keys[GRACE]}"}
        async with httpx.AsyncClient(transport=asgi, base_url="http://submission", headers=headers) as client:
            yield Harness(app, broker, client, events, tmp_path / "export", tmp_path / "state", keys), transport


async def test_status_shows_the_last_transport_error_and_the_next_retry(
    flaky: tuple[Harness, FlakyTransport],
) -> None:
    harness, transport = flaky
    for r in rows(2):
        await harness.send_record(r)
    resp = await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    sid = resp.json()["submission"]["submission_id"]
    assert (await harness.client.post(f"/v1/submissions/{sid}/approve", json={"by": GRACE})).status_code == 200
    async with asyncio.timeout(10):
        await transport.down.wait()

    status = (await harness.client.get(f"/v1/submissions/{sid}/status")).json()
    assert status["state"] == "approved"
    problem = status["delivery_problem"]
    assert problem["error"] == "upload: TransportError (HTTP 503 from MESH: Service Unavailable)"
    assert problem["attempts"] == 2
    at, next_retry = datetime.fromisoformat(problem["at"]), datetime.fromisoformat(problem["next_retry_at"])
    assert (next_retry - at).total_seconds() == 30.0

    transport.up.set()
    async with asyncio.timeout(10):
        await harness.workflow.join()
    status = (await harness.client.get(f"/v1/submissions/{sid}/status")).json()
    assert status["state"] == "sent"
    assert status["delivery_problem"] is None
