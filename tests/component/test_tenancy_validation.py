"""Tenancy on the raw Kafka topic: a record whose named source is unknown or out of scope is dead-lettered
with the reason and a pointer, and nothing reaches the validated topic; opt-out flags are carried on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from cld_governance.sharing import RecordMeta
from cld_governance.tenancy import open_registry
from cld_schemas import topics
from cld_schemas.events import DeadLetter, DeadLetterReason, RecordValidated
from cld_validation.service import ValidationSettings, create_app
from tests.component import test_validation_service
from tests.component.test_validation_service import Harness
from tests.support.capture import capture
from tests.support.records import service_record

harness = test_validation_service.harness  # the registry-backed harness (by assignment: no F811)


@pytest.fixture
async def open_harness() -> AsyncIterator[Harness]:
    app = create_app(
        ValidationSettings(kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING"), tenants=open_registry()
    )
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    validated = capture(broker, topics.VALIDATED)
    deadletters = capture(broker, topics.DEADLETTER)
    async with TestKafkaBroker(broker):
        yield Harness(broker, validated, deadletters, app)


@pytest.mark.parametrize(
    ("headers", "key", "reason", "detail"),
    [
        ({}, b"318", DeadLetterReason.UNKNOWN_SOURCE, "names no source"),
        ({"cld-source": "not-registered"}, b"318", DeadLetterReason.UNKNOWN_SOURCE, "names no source"),
        ({"cld-source": "bad source id with spaces"}, b"318", DeadLetterReason.UNKNOWN_SOURCE, "names no source"),
        ({"cld-source": "case-system"}, b"319", DeadLetterReason.SOURCE_NOT_ALLOWED, "'case-system' may not"),
        ({"cld-source": "other-la-system"}, b"318", DeadLetterReason.SOURCE_NOT_ALLOWED, "LA 318"),
        ({"cld-source": "care-provider"}, b"102", DeadLetterReason.SOURCE_NOT_ALLOWED, "LA 102"),
    ],
    ids=["no-source", "unknown", "malformed", "la-a-for-la-b", "other-la", "provider-uncontracted"],
)
async def test_unknown_or_out_of_scope_source_is_dead_lettered_and_the_next_record_flows(
    harness: Harness, headers: dict[str, str], key: bytes, reason: DeadLetterReason, detail: str
) -> None:
    value = json.dumps(service_record(la_code=None)).encode()
    await harness.broker.publish(value, topics.RAW, key=key, headers=headers)
    await harness.send(service_record(), headers={"cld-source": "case-system", "cld-event-id": "after"})

    [letter] = [DeadLetter.model_validate(b) for b in harness.deadletters.bodies]
    assert letter.reason is reason
    assert detail in letter.detail
    assert (letter.topic, letter.partition, letter.offset) == (topics.RAW, 0, 0)  # the pointer to re-drive it
    assert letter.payload_bytes == len(value)
    assert "9990000018" not in letter.model_dump_json()
    assert [b["provenance"]["event_id"] for b in harness.validated.bodies] == ["after"]
    assert harness.metric("cld_deadletters_total", {"service": "validation", "reason": reason.value}) == 1


async def test_a_withdrawal_for_another_la_is_refused_too(harness: Harness) -> None:
    await harness.send(
        {"la_person_unique_identifier": "P1", "event_reference": "EV1"},
        key=b"319",
        headers={"cld-source": "case-system", "cld-action": "withdraw"},
    )
    assert harness.validated.bodies == []
    assert DeadLetter.model_validate(harness.deadletters.bodies[0]).reason is DeadLetterReason.SOURCE_NOT_ALLOWED


async def test_a_source_without_an_http_key_may_still_publish_on_kafka_for_its_la(harness: Harness) -> None:
    await harness.send(service_record(), headers={"cld-source": "kafka-only"})
    event = RecordValidated.model_validate(harness.validated.bodies[0])
    assert event.provenance.source == "kafka-only"


@pytest.mark.parametrize(
    ("header", "flags"),
    [
        ("objection", ["objection"]),
        ("objection, National-Data-Opt-Out", ["national-data-opt-out", "objection"]),
        ("something-new", ["unrecognised"]),  # fail closed: an unknown token counts as an opt-out
        (None, []),
    ],
)
async def test_opt_out_flags_are_carried_into_the_validated_event(
    harness: Harness, header: str | None, flags: list[str]
) -> None:
    headers = {"cld-source": "case-system", "cld-event-id": "o1"}
    if header is not None:
        headers["cld-opt-out"] = header
    await harness.send(service_record(), headers=headers)

    event = RecordValidated.model_validate(harness.validated.bodies[0])
    assert event.provenance.opt_outs == flags
    out_headers = harness.validated.headers[0]
    assert out_headers.get("cld-opt-out") == (",".join(flags) or None)
    meta = RecordMeta.from_headers(record_id="o1", la_code="318", headers=out_headers)
    assert bool(meta.opt_outs) == bool(flags)
    assert "opt" not in json.dumps(event.record)  # never a CLD field


async def test_open_mode_accepts_any_source_for_any_la(open_harness: Harness) -> None:
    await open_harness.broker.publish(json.dumps(service_record(la_code=None)).encode(), topics.RAW, key=b"999")
    await open_harness.send(service_record(), headers={"cld-source": "anything"})

    assert open_harness.deadletters.bodies == []
    assert [b["provenance"]["source"] for b in open_harness.validated.bodies] == ["unknown", "anything"]
