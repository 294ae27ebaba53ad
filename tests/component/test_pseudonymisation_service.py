"""The pseudonymisation-preview service alone, on FastStream's in-memory TestKafkaBroker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from pydantic import SecretStr

from cld_governance.tenancy import TenancyError, open_registry
from cld_pseudonymisation.service import PseudonymisationSettings, create_app
from cld_schemas import topics
from cld_schemas.events import DeadLetter, DeadLetterReason, Provenance, RecordPseudonymised, RecordValidated
from cld_schemas.spec import Release
from cld_validation.intake import normalise_dates
from tests.support.capture import Captured, capture
from tests.support.records import service_record
from tests.support.tenancy import Tenancy, make_tenancy

TEST_KEY = "11" * 32


def validated(event_id: str = "ev-1", **overrides: Any) -> RecordValidated:
    return RecordValidated(
        la_code="318",
        release=Release.R2,
        provenance=Provenance(source="test", event_id=event_id, received_at=datetime.now(UTC)),
        record=normalise_dates(dict(service_record(**overrides))),
        findings=[],
        failed=False,
        validated_at=datetime.now(UTC),
    )


@dataclass
class Harness:
    broker: KafkaBroker
    out: Captured
    deadletters: Captured
    app: Any
    tenancy: Tenancy

    async def send(self, event: RecordValidated | bytes) -> None:
        body = event if isinstance(event, bytes) else event.model_dump_json().encode()
        await self.broker.publish(body, topics.VALIDATED, key=b"318")

    def metric(self, name: str, labels: dict[str, str]) -> float:
        return float(self.app.context.get("registry").get_sample_value(name, labels) or 0.0)


def settings() -> PseudonymisationSettings:
    return PseudonymisationSettings(
        kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING", pseudo_key=SecretStr(TEST_KEY)
    )


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    tenancy = make_tenancy()
    app = create_app(settings(), tenants=tenancy.registry)
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    out = capture(broker, topics.PSEUDONYMISED)
    deadletters = capture(broker, topics.DEADLETTER)
    async with TestKafkaBroker(broker):
        yield Harness(broker, out, deadletters, app, tenancy)


async def get_risk(app: Any, headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
        return await client.get("/v1/risk", params=params, headers=headers or {})


async def test_validated_record_comes_out_pseudonymised(harness: Harness) -> None:
    await harness.send(validated())

    [body] = harness.out.bodies
    event = RecordPseudonymised.model_validate(body)
    text = json.dumps(body)
    for identifying in ("9990000018", "P000123", "Test", "Person", "AB1 2CD"):
        assert identifying not in text
    assert event.record["nhs_number_pseudo"]
    assert event.purpose == "nhs-england-preview"
    assert event.provenance.event_id == "ev-1"
    assert harness.out.keys == [b"318"]
    assert harness.metric("cld_records_pseudonymised_total", {"la_code": "318"}) == 1


async def test_risk_gauges_and_endpoint_per_la_and_period(harness: Harness) -> None:
    await harness.send(validated("a", la_person_unique_identifier="P1"))
    await harness.send(validated("b", la_person_unique_identifier="P2", gender="Male"))

    period = "2025-04-01_2026-03-31"
    assert harness.metric("cld_risk_min_k", {"la_code": "318", "period": period}) == 1
    assert harness.metric("cld_risk_max_prosecutor", {"la_code": "318", "period": period}) == 1.0
    operator = harness.tenancy.operator_auth("la-318")
    r = await get_risk(harness.app, operator, la="318", period=period)
    missing = await get_risk(harness.app, operator, la="318", period="2024-04-01_2025-03-31")
    assert r.status_code == 200
    assert r.json()["people"] == 2
    assert missing.status_code == 404


async def test_risk_needs_an_operator_key(harness: Harness) -> None:
    """Finding 6: the figures (people count, uniques, class sizes) are an operator's view, not public."""
    await harness.send(validated("a", la_person_unique_identifier="P1"))

    for headers in (
        None,
        {"Authorization": "Bearer cldk_not-a-key"},
        {"Authorization": "Basic " + harness.tenancy.operator_keys["la-318"]},
        harness.tenancy.auth("regional-hub"),  # a source key is not an operator key
    ):
        for params in ({}, {"la": "318"}):
            r = await get_risk(harness.app, headers, **params)
            assert r.status_code == 401, (headers, params)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert "people" not in r.text
            assert "available" not in r.text


async def test_risk_is_scoped_to_the_operators_las(harness: Harness) -> None:
    await harness.send(validated("a", la_person_unique_identifier="P1"))
    other = validated("b", la_person_unique_identifier="P2").model_copy(update={"la_code": "319"})
    await harness.send(other)
    period = "2025-04-01_2026-03-31"
    auth = harness.tenancy.operator_auth

    refused = await get_risk(harness.app, auth("la-319"), la="318", period=period)
    assert refused.status_code == 403
    assert "operator_not_in_scope" in refused.json()["detail"]
    assert "people" not in refused.json()
    unknown_la = await get_risk(harness.app, auth("la-319"), la="102")
    assert unknown_la.status_code == 403  # out of scope says nothing about whether the LA has data

    own = await get_risk(harness.app, auth("la-319"), la="319", period=period)
    assert own.status_code == 200
    assert own.json()["la_code"] == "319"
    listing = await get_risk(harness.app, auth("la-318"))
    assert [a["la_code"] for a in listing.json()["available"]] == ["318"]

    hub = harness.tenancy.operator_auth("hub-north")
    assert (await get_risk(harness.app, hub, la="318", period=period)).status_code == 200
    assert (await get_risk(harness.app, hub, la="319", period=period)).status_code == 200
    hub_listing = await get_risk(harness.app, hub)
    assert sorted(a["la_code"] for a in hub_listing.json()["available"]) == ["318", "319"]


async def test_open_tenancy_mode_serves_risk_without_a_key() -> None:
    app = create_app(settings(), tenants=open_registry())
    async with TestKafkaBroker(app.broker):  # type: ignore[arg-type]
        await app.broker.publish(validated("a").model_dump_json().encode(), topics.VALIDATED, key=b"318")  # type: ignore[union-attr]
        r = await get_risk(app, la="318")
    assert r.status_code == 200
    assert r.json()["people"] == 1


def test_without_a_registry_the_service_refuses_to_start() -> None:
    with pytest.raises(TenancyError, match="no tenants registry"):
        create_app(settings())


async def test_unreadable_validated_message_is_dead_lettered(harness: Harness) -> None:
    await harness.send(b'{"la_code": "318"}')

    letter = DeadLetter.model_validate(harness.deadletters.bodies[0])
    assert letter.reason is DeadLetterReason.WRONG_TYPE
    assert letter.service == "pseudonymisation"
    assert harness.out.bodies == []


def test_without_a_key_the_service_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="no pseudonymisation key"):
        create_app(PseudonymisationSettings(kafka_bootstrap_servers="127.0.0.1:1"), tenants=open_registry())


def risk_series(app: Any) -> list[tuple[str, dict[str, str]]]:
    registry = app.context.get("registry")
    return [(s.name, s.labels) for m in registry.collect() if m.name.startswith("cld_risk_") for s in m.samples]


async def test_made_up_periods_do_not_add_series_or_accumulators(harness: Harness) -> None:
    """Finding 7: 2,000 records with made-up reporting periods (each distinct) next to real ones: the risk series
    and accumulators stay bounded; the made-up ones are measured under period="other"."""
    await harness.send(validated("real-1", la_person_unique_identifier="R1"))
    await harness.send(validated("real-2", la_person_unique_identifier="R2"))
    baseline = len(risk_series(harness.app))
    for i in range(2000):
        year, day = 2000 + i // 300, 1 + i % 28
        await harness.send(
            validated(
                f"made-up-{i}",
                la_person_unique_identifier=f"M{i}",
                reporting_period_start_date=f"{day:02d}/{1 + i % 12:02d}/{year}",
                reporting_period_end_date=f"{day:02d}/{1 + (i + 5) % 12:02d}/{year + 1 + i % 3}",
            )
        )

    risk = harness.app.context.get("risk")
    assert len(harness.out.bodies) == 2002  # every record is still pseudonymised
    assert sorted(risk.accumulators) == [("318", "2025-04-01_2026-03-31"), ("318", "other")]
    assert len(risk.accumulators[("318", "other")]) == 2000
    series = risk_series(harness.app)
    assert len(series) == 2 * baseline
    assert {labels["period"] for _, labels in series} == {"2025-04-01_2026-03-31", "other"}
    other = await get_risk(harness.app, harness.tenancy.operator_auth("la-318"), la="318", period="other")
    assert other.json()["people"] == 2000


async def test_a_batch_is_one_frame_per_tenant_and_a_failing_tenant_is_dead_lettered_alone(harness: Harness) -> None:
    """Issue 11: a Kafka batch is pseudonymised as one frame per tenant (LA); records of a tenant that cannot be
    pseudonymised (here an LA code that is no tenant label) are dead-lettered, the rest of the batch goes on, in
    order, and the risk counts only the records that came out."""
    good = validated("ev-a", la_person_unique_identifier="P1")
    bad = validated("ev-b", la_person_unique_identifier="P2").model_copy(update={"la_code": "not a label"})
    other = validated("ev-c", la_person_unique_identifier="P3").model_copy(update={"la_code": "319"})
    again = validated("ev-d", la_person_unique_identifier="P1", gender="Male")
    bodies = [e.model_dump_json().encode() for e in (good, bad, other, again)]
    await harness.broker.publish_batch(*bodies, topic=topics.VALIDATED)

    events = [RecordPseudonymised.model_validate(b) for b in harness.out.bodies]
    assert [e.provenance.event_id for e in events] == ["ev-a", "ev-c", "ev-d"]
    assert harness.out.keys == [b"318", b"319", b"318"]
    [letter] = [DeadLetter.model_validate(b) for b in harness.deadletters.bodies]
    assert letter.reason is DeadLetterReason.PROCESSING_ERROR
    # one frame for LA 318: the same LA person id has one pseudonym in both of its records
    assert (
        events[0].record["la_person_unique_identifier_pseudo"] == events[2].record["la_person_unique_identifier_pseudo"]
    )
    risk = harness.app.context.get("risk")
    people = {key: len(acc) for key, acc in risk.accumulators.items()}
    assert people == {("318", "2025-04-01_2026-03-31"): 1, ("319", "2025-04-01_2026-03-31"): 1}
    [acc_318] = [acc for key, acc in risk.accumulators.items() if key[0] == "318"]
    assert acc_318.rows == 2
    assert acc_318.summary().people == 1
