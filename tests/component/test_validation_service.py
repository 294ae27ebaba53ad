"""The validation service alone, on FastStream's in-memory TestKafkaBroker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from cld_schemas import topics
from cld_schemas.events import DeadLetter, DeadLetterReason, RecordValidated
from cld_validation.service import ValidationSettings, create_app
from tests.support.capture import Captured, capture
from tests.support.records import service_record
from tests.support.tenancy import DEFAULT_SOURCE, make_tenancy


@dataclass
class Harness:
    broker: KafkaBroker
    validated: Captured
    deadletters: Captured
    app: Any

    async def send(
        self, value: bytes | dict[str, Any], *, key: bytes | None = b"318", headers: dict[str, str] | None = None
    ) -> None:
        """Publish as the registry's default source unless ``headers`` name another (or none: ``{}`` values)."""
        body = json.dumps(value).encode() if isinstance(value, dict) else value
        await self.broker.publish(body, topics.RAW, key=key, headers={"cld-source": DEFAULT_SOURCE, **(headers or {})})

    def metric(self, name: str, labels: dict[str, str]) -> float:
        value = self.app.context.get("registry").get_sample_value(name, labels)
        return float(value or 0.0)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    app = create_app(
        ValidationSettings(kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING"), tenants=make_tenancy().registry
    )
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    validated = capture(broker, topics.VALIDATED)
    deadletters = capture(broker, topics.DEADLETTER)
    async with TestKafkaBroker(broker):
        yield Harness(broker, validated, deadletters, app)


async def test_valid_record_is_published_validated_with_no_findings(harness: Harness) -> None:
    await harness.send(service_record(), headers={"cld-source": "case-system", "cld-event-id": "ev-1"})

    assert harness.deadletters.bodies == []
    [body] = harness.validated.bodies
    event = RecordValidated.model_validate(body)
    assert event.la_code == "318"
    assert event.findings == []
    assert event.failed is False
    assert event.provenance.source == "case-system"
    assert event.provenance.event_id == "ev-1"
    assert harness.validated.keys == [b"318"]
    assert harness.metric("cld_records_validated_total", {"la_code": "318", "outcome": "passed"}) == 1


async def test_invalid_values_are_reported_as_findings_not_dropped(harness: Harness) -> None:
    await harness.send(service_record(nhs_number="12345", gender=None))

    [body] = harness.validated.bodies
    event = RecordValidated.model_validate(body)
    assert event.failed is True
    rules = {(f.field, f.rule) for f in event.findings}
    assert ("NHS Number", "CLD020") in rules
    assert event.record["nhs_number"] == "12345"  # reported, never silently changed
    assert all("12345" not in f.message for f in event.findings)
    assert harness.metric("cld_findings_total", {"la_code": "318", "field": "NHS Number", "rule": "CLD020"}) == 1
    assert harness.metric("cld_records_validated_total", {"la_code": "318", "outcome": "failed"}) == 1


async def test_iso_dates_are_normalised_to_the_spec_format(harness: Harness) -> None:
    await harness.send(service_record(event_start_date="2025-05-01", date_of_birth="1950-06-15"))

    event = RecordValidated.model_validate(harness.validated.bodies[0])
    assert event.record["event_start_date"] == "01/05/2025"
    assert event.record["date_of_birth"] == "15/06/1950"
    assert event.record["reporting_period_end_date"] == "31/03/2026"


async def test_la_code_is_taken_from_the_key_when_the_record_has_none(harness: Harness) -> None:
    await harness.send(service_record(la_code=None), key=b"102")

    event = RecordValidated.model_validate(harness.validated.bodies[0])
    assert event.la_code == "102"
    assert event.record["la_code"] == "102"
    assert harness.validated.keys == [b"102"]


async def test_withdrawal_is_published_as_withdrawn(harness: Harness) -> None:
    await harness.send(
        {"la_person_unique_identifier": "P000123", "event_reference": "EV000001"}, headers={"cld-action": "withdraw"}
    )

    event = RecordValidated.model_validate(harness.validated.bodies[0])
    assert event.withdrawn is True
    assert event.findings == []


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"\xff\xfe not utf-8", b"318", DeadLetterReason.NOT_UTF8),
        (b"{not json", b"318", DeadLetterReason.NOT_JSON),
        (b"[1, 2]", b"318", DeadLetterReason.NOT_AN_OBJECT),
        (json.dumps({"nhs_numbr": "9990000018"}).encode(), b"318", DeadLetterReason.UNKNOWN_FIELD),
        (json.dumps({"nhs_number": ["9990000018"]}).encode(), b"318", DeadLetterReason.WRONG_TYPE),
        (json.dumps({"first_name": "x" * 300_000}).encode(), b"318", DeadLetterReason.TOO_LARGE),
        (json.dumps({"la_code": "318"}).encode(), b"999", DeadLetterReason.LA_CODE_MISMATCH),
        (json.dumps({"first_name": "Secret"}).encode(), None, DeadLetterReason.MISSING_LA_CODE),
    ],
)
async def test_unreadable_message_goes_to_dead_letter_without_its_payload(
    harness: Harness, value: bytes, key: bytes | None, reason: DeadLetterReason
) -> None:
    await harness.send(value, key=key)

    assert harness.validated.bodies == []
    [body] = harness.deadletters.bodies
    letter = DeadLetter.model_validate(body)
    assert letter.reason is reason
    assert letter.topic == topics.RAW
    assert letter.partition == 0
    assert letter.payload_bytes == len(value)
    assert harness.deadletters.headers[0]["cld-deadletter-reason"] == reason.value
    text = json.dumps(body)
    for secret in ("Secret", "9990000018", "not json", "xxxx"):
        assert secret not in text
    assert harness.metric("cld_deadletters_total", {"service": "validation", "reason": reason.value}) == 1


async def test_records_after_a_poison_message_still_flow(harness: Harness) -> None:
    await harness.send(b"{broken")
    await harness.send(service_record(event_reference="EV2"), headers={"cld-event-id": "after"})

    assert len(harness.deadletters.bodies) == 1
    assert [b["provenance"]["event_id"] for b in harness.validated.bodies] == ["after"]


async def test_processing_error_becomes_a_dead_letter(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import cld_validation.service as service

    def explode(*args: object, **kwargs: object) -> object:
        raise RuntimeError("boom with value 9990000018")

    monkeypatch.setattr(service, "validate_records", explode)
    await harness.send(service_record())

    letter = DeadLetter.model_validate(harness.deadletters.bodies[0])
    assert letter.reason is DeadLetterReason.PROCESSING_ERROR
    assert "9990000018" not in letter.detail


async def test_same_event_id_twice_keeps_the_same_event_id_for_downstream_dedupe(harness: Harness) -> None:
    await harness.send(service_record(), headers={"cld-event-id": "dup-1"})
    await harness.send(service_record(), headers={"cld-event-id": "dup-1"})

    ids = [b["provenance"]["event_id"] for b in harness.validated.bodies]
    assert ids == ["dup-1", "dup-1"]


async def test_without_an_event_id_the_message_position_is_the_identity(harness: Harness) -> None:
    await harness.send(service_record())

    event = RecordValidated.model_validate(harness.validated.bodies[0])
    assert event.provenance.event_id == f"kafka:{topics.RAW}:0:0"
    assert event.provenance.source == DEFAULT_SOURCE


async def test_a_batch_is_validated_at_once_and_a_failing_batch_record_by_record(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One call of the rules per Kafka batch (one frame per release); should it fail, each record is tried alone
    and only the record that fails is dead-lettered."""
    import cld_validation.service as service

    real = service.validate_records
    calls: list[int] = []

    def picky(records: list[dict[str, Any]], releases: list[Any], **kwargs: Any) -> Any:
        calls.append(len(records))
        if any(r.get("event_reference") == "poison" for r in records):
            raise RuntimeError("boom")
        return real(records, releases, **kwargs)

    monkeypatch.setattr(service, "validate_records", picky)
    bodies = [json.dumps(service_record(event_reference=ref, gender="female")).encode() for ref in ("a", "b")]
    await harness.broker.publish_batch(*bodies, topic=topics.RAW, headers={"cld-source": DEFAULT_SOURCE})
    assert calls == [2]
    assert [RecordValidated.model_validate(b).record["event_reference"] for b in harness.validated.bodies] == ["a", "b"]
    assert all(
        any(f.rule == "CLD004" for f in RecordValidated.model_validate(b).findings) for b in harness.validated.bodies
    )

    calls.clear()
    bodies = [json.dumps(service_record(event_reference=ref)).encode() for ref in ("c", "poison", "d")]
    await harness.broker.publish_batch(*bodies, topic=topics.RAW, headers={"cld-source": DEFAULT_SOURCE})
    assert calls == [3, 1, 1, 1]
    refs = [RecordValidated.model_validate(b).record["event_reference"] for b in harness.validated.bodies]
    assert refs == ["a", "b", "c", "d"]
    [letter] = [DeadLetter.model_validate(b) for b in harness.deadletters.bodies]
    assert letter.reason is DeadLetterReason.PROCESSING_ERROR
    assert letter.offset is not None
