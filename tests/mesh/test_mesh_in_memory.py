"""Ingest + validation + pseudonymisation in ONE in-memory TestKafkaBroker: a posted record comes out
validated and pseudonymised, a CSV upload flows through, and a poison message does not stop the flow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from pydantic import SecretStr

from cld_ingest.service import IngestSettings
from cld_ingest.service import create_app as create_ingest
from cld_pseudonymisation.service import PseudonymisationSettings
from cld_pseudonymisation.service import create_app as create_pseudonymisation
from cld_schemas import topics
from cld_schemas.events import RecordPseudonymised, RecordValidated
from cld_validation.service import ValidationSettings
from cld_validation.service import create_app as create_validation
from tests.component.test_ingest_service import csv_text
from tests.support.capture import Captured, capture
from tests.support.records import service_record
from tests.support.tenancy import make_tenancy


@dataclass
class Mesh:
    client: httpx.AsyncClient
    ingest_broker: KafkaBroker
    validated: Captured
    pseudonymised: Captured
    deadletters: Captured


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    common = {"kafka_bootstrap_servers": "127.0.0.1:1", "log_level": "WARNING"}
    tenancy = make_tenancy()
    ingest = create_ingest(IngestSettings(**common), tenants=tenancy.registry)  # type: ignore[arg-type]
    validation = create_validation(ValidationSettings(**common), tenants=tenancy.registry)  # type: ignore[arg-type]
    pseudo = create_pseudonymisation(
        PseudonymisationSettings(**common, pseudo_key=SecretStr("22" * 32)),  # type: ignore[arg-type]
        tenants=tenancy.registry,
    )
    brokers = [ingest.state.broker, validation.broker, pseudo.broker]
    assert all(isinstance(b, KafkaBroker) for b in brokers)
    recorder = KafkaBroker()  # a fourth, test-only broker holding the recorders
    validated = capture(recorder, topics.VALIDATED)
    pseudonymised = capture(recorder, topics.PSEUDONYMISED)
    deadletters = capture(recorder, topics.DEADLETTER)
    async with TestKafkaBroker(*brokers, recorder):
        transport = httpx.ASGITransport(app=ingest)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest", headers=tenancy.auth()) as client:
            yield Mesh(client, ingest.state.broker, validated, pseudonymised, deadletters)


async def test_a_posted_record_comes_out_validated_and_pseudonymised(mesh: Mesh) -> None:
    r = await mesh.client.post("/v1/records", json=service_record(nhs_number="123"), headers={"Idempotency-Key": "m1"})
    assert r.status_code == 202

    [v] = [RecordValidated.model_validate(b) for b in mesh.validated.bodies]
    [p] = [RecordPseudonymised.model_validate(b) for b in mesh.pseudonymised.bodies]
    assert v.provenance.event_id == p.provenance.event_id == "m1"
    assert any(f.rule == "CLD020" for f in v.findings)
    assert "nhs_number" not in p.record
    assert p.record["nhs_number_pseudo"]


async def test_a_csv_upload_flows_through_and_a_poison_message_does_not_stop_it(mesh: Mesh) -> None:
    await mesh.ingest_broker.publish(b"\x00not json", topics.RAW, key=b"318", headers={"cld-source": "case-system"})
    text = csv_text([service_record(event_reference=f"EV{i}", event_start_date="01/05/2025") for i in range(5)])
    r = await mesh.client.post("/v1/uploads?la=318", content=text.encode(), headers={"content-type": "text/csv"})
    assert r.status_code == 202

    assert len(mesh.deadletters.bodies) == 1
    assert len(mesh.validated.bodies) == 5
    ids = {b["provenance"]["event_id"] for b in mesh.pseudonymised.bodies}
    assert len(ids) == 5
