"""The submission service end to end with ``CLD_SUBMISSION_DATABASE_URL`` set: its state in a real PostgreSQL.

The component tests of the service (in-memory ``TestKafkaBroker``, the HTTP API through httpx) run again here with
the record state and the submissions in a fresh PostgreSQL database; then two instances share one database: a
submission requested on one is approved on the other and, at the same moment, on the first. One approval wins
(the other is refused, 409), the file is handed to the transport exactly once, one 'sent' event is published,
and both instances report it sent.

The two instances share the folder of submission files (a shared volume in a deployment): the approving instance
checks the file the requesting one assembled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from cld_schemas import topics
from cld_submission.adapters.transport import FileExportTransport
from cld_submission.adapters.transport.base import SendResult
from cld_submission.entrypoints.app import create_app
from cld_submission.entrypoints.settings import SubmissionSettings
from tests.component import test_submission_service as component
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

pytestmark = pytest.mark.integration


class CountingExport(FileExportTransport):
    """The file transport, counting hand-overs (shared by both instances of a test)."""

    sends: list[str]

    def __init__(self, directory: Path, sends: list[str]) -> None:
        super().__init__(directory)
        self.sends = sends

    async def send(self, *, path: Path, filename: str, submission_id: str, local_id: str) -> SendResult:
        self.sends.append(submission_id)
        return await super().send(path=path, filename=filename, submission_id=submission_id, local_id=local_id)


@asynccontextmanager
async def instance(state_dir: Path, database_url: str, export_dir: Path, sends: list[str]) -> AsyncIterator[Harness]:
    settings = SubmissionSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        log_level="WARNING",
        state_dir=state_dir,
        consumer_batch_timeout_ms=1,
        database_url=database_url,
    )
    registry, keys = operators_registry()
    app = create_app(
        settings, transport=CountingExport(export_dir, sends), tenants=registry, policy=policy_with_bases()
    )
    broker: KafkaBroker = app.state.broker
    events = capture(broker, topics.SUBMISSIONS)
    async with TestKafkaBroker(broker), app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {keys[GRACE]}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://submission", headers=headers
        ) as client:
            yield Harness(app, broker, client, events, export_dir, state_dir, keys)


@pytest.fixture
async def harness(tmp_path: Path, fresh_database: str) -> AsyncIterator[Harness]:
    async with instance(tmp_path / "state", fresh_database, tmp_path / "export", []) as h:
        yield h


test_records_in_request_approve_and_export = component.test_records_in_request_approve_and_export
test_requesting_twice_returns_the_same_submission = component.test_requesting_twice_returns_the_same_submission
test_changed_content_is_a_new_version_that_supersedes_the_unsent_one = (
    component.test_changed_content_is_a_new_version_that_supersedes_the_unsent_one
)
test_approve_refuses_errors_unless_accepted_and_refuses_twice = (
    component.test_approve_refuses_errors_unless_accepted_and_refuses_twice
)
test_diff_against_the_previous_sent_submission = component.test_diff_against_the_previous_sent_submission


async def test_the_state_is_in_postgresql_not_in_sqlite_files(harness: Harness, fresh_database: str) -> None:
    for r in rows(3):
        await harness.send_record(r)
    resp = await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    assert resp.status_code == 201, resp.text
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone() == (3,)
        assert conn.execute("SELECT count(*) FROM submissions").fetchone() == (1,)
    assert sorted(p.name for p in harness.state_dir.glob("*.sqlite3")) == []


async def test_two_instances_one_database_approved_on_both_at_once_is_sent_once(
    tmp_path: Path, fresh_database: str
) -> None:
    sends: list[str] = []
    export_dir = tmp_path / "export"
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    (b_dir).mkdir()
    (a_dir / "files").mkdir(parents=True)
    (b_dir / "files").symlink_to(a_dir / "files")  # the shared folder of submission files
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(instance(a_dir, fresh_database, export_dir, sends))
        b = await stack.enter_async_context(instance(b_dir, fresh_database, export_dir, sends))
        for r in rows(4):
            await a.send_record(r)
        resp = await a.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=a.auth(ADA))
        assert resp.status_code == 201, resp.text
        sid = resp.json()["submission"]["submission_id"]
        shown = (await b.client.get(f"/v1/submissions/{sid}", headers=b.auth(GRACE))).json()
        assert shown["submission"]["state"] == "checked"

        on_b, on_a = await asyncio.gather(
            b.client.post(f"/v1/submissions/{sid}/approve", json={"by": GRACE}, headers=b.auth(GRACE)),
            a.client.post(f"/v1/submissions/{sid}/approve", json={"by": GRACE}, headers=a.auth(GRACE)),
        )
        assert sorted([on_a.status_code, on_b.status_code]) == [200, 409], (on_a.text, on_b.text)
        # What each instance's ticker (or a restart's resume) does: now both deliver it at the same moment.
        a.workflow.pick_up_approved()
        b.workflow.pick_up_approved()
        async with asyncio.timeout(20):
            await asyncio.gather(a.workflow.join(), b.workflow.join())

        assert sends == [sid]
        for h in (a, b):
            status = (await h.client.get(f"/v1/submissions/{sid}/status", headers=h.auth(GRACE))).json()
            assert status["state"] == "sent"
        published = [x["state"] for x in a.events.bodies + b.events.bodies if x["submission_id"] == sid]
        assert sorted(published) == sorted(["requested", "assembled", "checked", "approved", "sent"])
