"""Issue 13 item 6: the validation service checks each record against the release in force for its reporting
period (the spec's cut-over data), unless the source (tenants registry) or the upload (``cld-release``) says
otherwise. Today's date plays no part: a 2024/25 record published today is a Release 1 record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from cld_governance.tenancy import Source, SourceKind
from cld_schemas import topics
from cld_schemas.events import RecordValidated
from cld_schemas.spec import Release
from cld_validation.service import ValidationSettings, create_app
from tests.component.test_validation_service import Harness
from tests.support.capture import capture
from tests.support.records import service_record
from tests.support.tenancy import make_tenancy

R1_LABELS: dict[str, str] = {
    "ethnicity": "White - Irish",
    "client_type": "Service User",
    "accommodation_status": "Tenant - private landlord",
    "service_type": "Long Term Support: Community",
    "service_component": "Home Support",
    "delivery_mechanism": "Direct Payment",
    "event_outcome": "Provision of service",
    "client_funding_status": "Fully Social Care Funded",
}
PERIOD_2024_25: dict[str, str] = {
    "reporting_period_start_date": "01/04/2024",
    "reporting_period_end_date": "31/03/2025",
    "event_start_date": "01/05/2024",
}


def r1_record(**overrides: Any) -> dict[str, Any]:
    return service_record(**{**R1_LABELS, **overrides})


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    base = make_tenancy().registry
    legacy = Source(id="legacy-system", kind=SourceKind.LA_SYSTEM, la_codes=("318",), release=Release.R1)
    registry = base.model_copy(update={"sources": (*base.sources, legacy)})
    app = create_app(ValidationSettings(kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING"), tenants=registry)
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    validated = capture(broker, topics.VALIDATED)
    deadletters = capture(broker, topics.DEADLETTER)
    async with TestKafkaBroker(broker):
        yield Harness(broker, validated, deadletters, app)


def _events(h: Harness) -> list[RecordValidated]:
    return [RecordValidated.model_validate(b) for b in h.validated.bodies]


def _release_1_failures(event: RecordValidated) -> list[str]:
    return [f.field for f in event.findings if f.validity == "Failed: Release 1"]


async def test_a_2024_25_record_published_today_is_checked_against_release_1(harness: Harness) -> None:
    await harness.send(r1_record(**PERIOD_2024_25), headers={"cld-event-id": "r1-2024"})

    [event] = _events(harness)
    assert event.release == "r1"
    assert _release_1_failures(event) == []
    assert event.failed is False, [(f.field, f.rule) for f in event.findings]


async def test_a_2025_26_record_is_checked_against_release_2(harness: Harness) -> None:
    await harness.send(service_record(), headers={"cld-event-id": "r2-2025"})  # period 2025/26, R2 labels
    await harness.send(r1_record(), headers={"cld-event-id": "r1-labels-2025"})  # same period, R1 labels

    r2_event, r1_labels = _events(harness)
    assert (r2_event.release, r2_event.failed) == ("r2", False)
    assert r1_labels.release == "r2"
    assert "Ethnicity" in _release_1_failures(r1_labels)


async def test_a_source_configured_for_release_1_keeps_release_1_after_the_cut_over(harness: Harness) -> None:
    await harness.send(r1_record(), headers={"cld-source": "legacy-system", "cld-event-id": "legacy"})

    [event] = _events(harness)
    assert event.release == "r1"
    assert _release_1_failures(event) == []


async def test_the_upload_header_overrides_period_and_source(harness: Harness) -> None:
    await harness.send(r1_record(), headers={"cld-release": "r1", "cld-event-id": "hdr-r1"})
    await harness.send(
        service_record(), headers={"cld-source": "legacy-system", "cld-release": "R2", "cld-event-id": "hdr-r2"}
    )

    by_id = {e.provenance.event_id: e for e in _events(harness)}
    assert by_id["hdr-r1"].release == "r1"
    assert _release_1_failures(by_id["hdr-r1"]) == []
    assert (by_id["hdr-r2"].release, by_id["hdr-r2"].failed) == ("r2", False)


async def test_an_unknown_release_header_loses_nothing_and_the_period_decides(harness: Harness) -> None:
    await harness.send(r1_record(**PERIOD_2024_25), headers={"cld-release": "release 9", "cld-event-id": "bad"})

    [event] = _events(harness)
    assert event.release == "r1"
    assert harness.deadletters.bodies == []


async def test_a_global_release_setting_still_applies_when_set() -> None:
    app = create_app(
        ValidationSettings(kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING", release=Release.R2),
        tenants=make_tenancy().registry,
    )
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    validated = capture(broker, topics.VALIDATED)
    async with TestKafkaBroker(broker):
        h = Harness(broker, validated, capture(broker, topics.DEADLETTER), app)
        await h.send(r1_record(**PERIOD_2024_25), headers={"cld-event-id": "global"})
    [event] = _events(h)
    assert event.release == "r2"
    assert "Ethnicity" in _release_1_failures(event)
