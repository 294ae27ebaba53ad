"""The submission service alone: TestKafkaBroker in memory, the HTTP API through httpx's ASGI transport.

Every API call is made by an operator of the test registry (``operators_registry``), with their key as
``Authorization: Bearer``; the default client is ``GRACE`` (LA operator of 318).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker

from cld_governance.loaders import default_policy
from cld_governance.sharing import SharingPolicy, parse_policy
from cld_governance.tenancy import Operator, OperatorRole, Registry, Tenant, generate_api_key, hash_api_key
from cld_schemas import topics
from cld_schemas.events import Provenance, RecordPseudonymised, RecordValidated, SubmissionEvent
from cld_schemas.spec import Release, load_spec
from cld_submission.adapters.audit_log import read_audit_log, verify_audit_log
from cld_submission.adapters.transport import FileExportTransport
from cld_submission.entrypoints.app import create_app
from cld_submission.entrypoints.settings import SubmissionSettings
from cld_submission.service_layer.workflow import SubmissionWorkflow
from tests.support.builders import LA_CODE, Row, a_request_row, a_service_row
from tests.support.capture import Captured, capture

PERIOD = {"la_code": LA_CODE, "period_start": "2024-04-01", "period_end": "2025-03-31"}
T0 = datetime(2025, 4, 2, 9, 0, tzinfo=UTC)
OTHER_LA = "319"

ADA = "Ada Operator"
"""Hub operator of the hub 'north' (318 and 319): views and requests, does not approve or export."""
GRACE = "Grace Approver"
"""LA operator of 318 (the default caller)."""
OLU = "Olu Officer"
"""LA operator of 319 only."""
TEST_ICB = "test-icb"
"""A recipient with a legal basis recorded for LA 318 (pseudonymised, opt-outs apply)."""
TEST_IDENTIFIABLE = "test-care-record"
"""A recipient whose basis permits the identifiable form (opt-outs still apply)."""


def operators_registry() -> tuple[Registry, dict[str, str]]:
    keys = {name: generate_api_key() for name in (ADA, GRACE, OLU)}
    registry = Registry(
        tenants=(
            Tenant(la_code=LA_CODE, name="Example Borough Council", hub_id="north"),
            Tenant(la_code=OTHER_LA, name="Example County Council", hub_id="north"),
        ),
        operators=(
            Operator(
                name=ADA,
                role=OperatorRole.HUB_OPERATOR,
                la_codes=(LA_CODE, OTHER_LA),
                hub_id="north",
                key_hash=hash_api_key(keys[ADA]),
            ),
            Operator(
                name=GRACE, role=OperatorRole.LA_OPERATOR, la_codes=(LA_CODE,), key_hash=hash_api_key(keys[GRACE])
            ),
            Operator(name=OLU, role=OperatorRole.LA_OPERATOR, la_codes=(OTHER_LA,), key_hash=hash_api_key(keys[OLU])),
        ),
    )
    return registry, keys


def policy_with_bases() -> SharingPolicy:
    """The packaged policy plus two recipients with a legal basis for LA 318 (synthetic, for tests)."""
    data = default_policy().model_dump(mode="json")
    basis = {
        "summary": "A data sharing agreement between the council and the recipient (test).",
        "instruments": ["Test data sharing agreement 2025"],
        "required_by_law": False,
        "la_codes": [LA_CODE],
        "recorded_by": "test",
        "recorded_on": "2025-01-01",
        "review_by": "2026-01-01",
    }
    data["recipients"].append(
        {"id": TEST_ICB, "name": "Test Integrated Care Board", "legal_basis": basis, "purposes": ["planning"]}
    )
    data["recipients"].append(
        {
            "id": TEST_IDENTIFIABLE,
            "name": "Test shared care record",
            "legal_basis": basis,
            "form": "identifiable",
            "identifiable_permitted": True,
            "purposes": ["direct care"],
        }
    )
    return parse_policy(data, name="test policy")


@dataclass
class Harness:
    app: FastAPI
    broker: KafkaBroker
    client: httpx.AsyncClient
    events: Captured
    export_dir: Path
    state_dir: Path
    keys: dict[str, str]
    seq: int = 0

    def auth(self, operator: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[operator]}"}

    @property
    def workflow(self) -> SubmissionWorkflow:
        wf: SubmissionWorkflow = self.app.state.workflow
        return wf

    async def send_record(self, row: Row, *, withdrawn: bool = False, opt_outs: tuple[str, ...] = ()) -> str:
        """Publish a validated record; returns its event id."""
        self.seq += 1
        event = RecordValidated(
            la_code=LA_CODE,
            release=Release.R1,
            provenance=Provenance(
                source="case-system",
                event_id=f"ev-{self.seq}",
                received_at=T0 + timedelta(seconds=self.seq),
                opt_outs=list(opt_outs),
            ),
            record=row,
            findings=[],
            failed=False,
            withdrawn=withdrawn,
            validated_at=T0,
        )
        await self.broker.publish(event.model_dump(mode="json"), topics.VALIDATED, key=LA_CODE.encode())
        return event.provenance.event_id

    async def send_pseudonymised(self, event_id: str, record: dict[str, str | None], *, purpose: str) -> None:
        """What a pseudonymisation instance with ``CLD_PURPOSE=purpose`` publishes for that event."""
        event = RecordPseudonymised(
            la_code=LA_CODE,
            provenance=Provenance(source="case-system", event_id=event_id, received_at=T0),
            key_id="test-key",
            purpose=purpose,
            record=record,
            pseudonymised_at=T0,
        )
        await self.broker.publish(event.model_dump(mode="json"), topics.PSEUDONYMISED, key=LA_CODE.encode())

    def lifecycle(self, submission_id: str) -> list[str]:
        return [
            SubmissionEvent.model_validate(b).state.value
            for b in self.events.bodies
            if b["submission_id"] == submission_id
        ]

    def metric(self, name: str, labels: dict[str, str]) -> float:
        return float(self.app.state.registry.get_sample_value(name, labels) or 0.0)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = SubmissionSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        log_level="WARNING",
        state_dir=tmp_path / "state",
        consumer_batch_timeout_ms=1,
    )
    export_dir = tmp_path / "export"
    registry, keys = operators_registry()
    app = create_app(settings, transport=FileExportTransport(export_dir), tenants=registry, policy=policy_with_bases())
    broker: KafkaBroker = app.state.broker
    events = capture(broker, topics.SUBMISSIONS)
    async with TestKafkaBroker(broker), app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {keys[GRACE]}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://submission", headers=headers) as client:
            yield Harness(app, broker, client, events, export_dir, tmp_path / "state", keys)


def rows(n: int) -> list[Row]:
    out = []
    for i in range(n):
        if i % 2:
            out.append(a_service_row(event_reference=f"S{i}", la_person_unique_identifier=f"P{i}"))
        else:
            out.append(a_request_row(event_reference=f"R{i}", la_person_unique_identifier=f"P{i}"))
    return out


async def test_records_in_request_approve_and_export(harness: Harness) -> None:
    for r in rows(6):
        await harness.send_record(r)
    await harness.send_record(a_request_row(event_reference="OPEN", event_end_date=None))  # out of scope

    resp = await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    assert resp.status_code == 201, resp.text
    sub = resp.json()["submission"]
    sid = sub["submission_id"]
    assert sub["state"] == "checked"
    assert sub["rows"] == 6

    shown = (await harness.client.get(f"/v1/submissions/{sid}")).json()
    assert shown["summary"]["rows"] == 6
    assert any(c["id"] == "DS-PERIOD-DERIVED" for c in shown["summary"]["dataset_checks"])

    file_resp = await harness.client.get(f"/v1/submissions/{sid}/file")
    assert file_resp.status_code == 200
    assert hashlib.sha256(file_resp.content).hexdigest() == sub["file_sha256"]
    header = next(csv.reader(io.StringIO(file_resp.content.decode("utf-8"))))
    assert header == [f.header for f in load_spec().file_fields]

    approved = await harness.client.post(f"/v1/submissions/{sid}/approve", json={"by": GRACE})
    assert approved.status_code == 200, approved.text
    async with asyncio.timeout(10):
        await harness.workflow.join()

    status = (await harness.client.get(f"/v1/submissions/{sid}/status")).json()
    assert status["state"] == "sent"
    assert status["message_id"] == sub["file_name"]
    exported = harness.export_dir / sub["file_name"]
    assert exported.read_bytes() == file_resp.content  # exactly the file that was shown

    assert harness.lifecycle(sid) == ["requested", "assembled", "checked", "approved", "sent"]
    assert harness.metric("cld_submission_transitions_total", {"la_code": LA_CODE, "state": "sent"}) == 1
    assert harness.metric("cld_submissions", {"la_code": LA_CODE, "state": "sent"}) == 1
    assert harness.metric("cld_mesh_send_total", {"outcome": "success"}) == 1

    audit = harness.state_dir / "audit.jsonl"
    assert verify_audit_log(audit).ok
    actions = [(e["action"], e.get("by")) for e in read_audit_log(audit, submission_id=sid)]
    assert actions == [("requested", "Ada Operator"), ("approved", "Grace Approver"), ("sent", None)]


async def test_requesting_twice_returns_the_same_submission(harness: Harness) -> None:
    for r in rows(4):
        await harness.send_record(r)
    first = await harness.client.post(
        "/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA)
    )
    second = await harness.client.post(
        "/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA)
    )
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["created"] is False
    assert second.json()["submission"]["submission_id"] == first.json()["submission"]["submission_id"]
    history = (await harness.client.get("/v1/submissions", params={"la": LA_CODE})).json()
    assert len(history) == 1


async def test_changed_content_is_a_new_version_that_supersedes_the_unsent_one(harness: Harness) -> None:
    for r in rows(4):
        await harness.send_record(r)
    first = (
        await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    ).json()
    await harness.send_record(a_request_row(event_reference="NEW", la_person_unique_identifier="P-NEW"))
    second = (
        await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    ).json()
    old_id, new_id = first["submission"]["submission_id"], second["submission"]["submission_id"]
    assert new_id != old_id
    assert second["submission"]["version"] == 2
    assert second["submission"]["supersedes"] == old_id
    assert (await harness.client.get(f"/v1/submissions/{old_id}/status")).json()["state"] == "superseded"
    refused = await harness.client.post(f"/v1/submissions/{old_id}/approve", json={"by": GRACE})
    assert refused.status_code == 409
    assert harness.lifecycle(old_id)[-1] == "superseded"


async def test_approve_refuses_errors_unless_accepted_and_refuses_twice(harness: Harness) -> None:
    resp = await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    sid = resp.json()["submission"]["submission_id"]  # empty file: DS-EMPTY is an error
    refused = await harness.client.post(f"/v1/submissions/{sid}/approve", json={"by": GRACE})
    assert refused.status_code == 409
    assert "error level" in refused.json()["detail"]
    ok = await harness.client.post(f"/v1/submissions/{sid}/approve", json={"by": GRACE, "accept_errors": True})
    assert ok.status_code == 200
    again = await harness.client.post(f"/v1/submissions/{sid}/approve", json={"by": GRACE, "accept_errors": True})
    assert again.status_code == 409
    async with asyncio.timeout(10):
        await harness.workflow.join()


async def test_diff_against_the_previous_sent_submission(harness: Harness) -> None:
    for r in rows(4):
        await harness.send_record(r)
    first = (
        await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    ).json()
    sid = first["submission"]["submission_id"]
    await harness.client.post(f"/v1/submissions/{sid}/approve", json={"by": GRACE})
    async with asyncio.timeout(10):
        await harness.workflow.join()
    # Next quarter: one service withdrawn while open, one request added.
    await harness.send_record(a_service_row(event_reference="S1", la_person_unique_identifier="P1"), withdrawn=True)
    await harness.send_record(a_request_row(event_reference="R9", la_person_unique_identifier="P9"))
    second = (
        await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    ).json()
    summary = (await harness.client.get(f"/v1/submissions/{second['submission']['submission_id']}")).json()["summary"]
    assert summary["previous_submission_id"] == sid
    diff = summary["diff"]
    assert (diff["added"], diff["removed"], diff["changed"]) == (1, 1, 0)
    assert diff["services_vanished_open"] == 1
    assert "DS-SERVICES-VANISHED" in {c["id"] for c in summary["dataset_checks"]}


async def test_unknown_submission_and_bad_input(harness: Harness) -> None:
    assert (await harness.client.get("/v1/submissions/nope")).status_code == 404
    bad = await harness.client.post("/v1/submissions", json={**PERIOD, "la_code": "ABC"})
    assert bad.status_code == 422
    backwards = {**PERIOD, "period_start": "2025-04-01", "period_end": "2024-03-31"}
    assert (await harness.client.post("/v1/submissions", json=backwards)).status_code == 422
    forever = {**PERIOD, "requested_by": ADA, "period_start": "0001-01-01", "period_end": "9999-12-31"}
    refused = await harness.client.post("/v1/submissions", json=forever, headers=harness.auth(ADA))
    assert refused.status_code == 422
    assert "before CLD began" in refused.json()["detail"]
    assert harness.workflow.history(None) == []  # nothing assembled, nothing recorded


async def test_metrics_endpoint_serves_the_contract(harness: Harness) -> None:
    await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    text = (await harness.client.get("/metrics")).text
    for name in (
        "cld_submission_transitions_total",
        "cld_submissions",
        "cld_mesh_send_total",
        "cld_mesh_acknowledged_total",
        "cld_submission_deadline_remaining_seconds",
        "cld_submission_approved_for_next_deadline",
    ):
        assert name in text
