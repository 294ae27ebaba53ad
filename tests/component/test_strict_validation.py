"""The raw topic applies the ingest API's JSON type rules (issue 10, finding 11; docs/contract.md "Types"):
a record with a number in a text field is one dead letter ``wrong_type`` naming the field (never the value),
a number in a numeric field is read as its text, and the partition moves on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cld_schemas import topics
from cld_schemas.events import DeadLetter, DeadLetterReason, RecordValidated
from tests.component import test_validation_service
from tests.component.test_validation_service import Harness
from tests.support.records import service_record

harness = test_validation_service.harness  # by assignment: no F811


@pytest.mark.parametrize(
    ("field", "value"),
    [("first_name", 12345), ("date_of_birth", 19500615), ("nhs_number", 9990000018), ("event_type", 1.0)],
)
async def test_a_number_in_a_text_field_is_a_wrong_type_dead_letter_naming_the_field(
    harness: Harness, field: str, value: Any
) -> None:
    await harness.send(service_record(**{field: value}), headers={"cld-event-id": "typed-1"})
    await harness.send(service_record(), headers={"cld-event-id": "good-after"})

    [body] = harness.deadletters.bodies
    letter = DeadLetter.model_validate(body)
    assert letter.reason is DeadLetterReason.WRONG_TYPE
    assert field in letter.detail
    assert str(value) not in letter.detail
    assert (letter.topic, letter.offset) == (topics.RAW, 0)
    [good] = [RecordValidated.model_validate(b) for b in harness.validated.bodies]
    assert good.provenance.event_id == "good-after"


async def test_numbers_in_numeric_fields_are_read_as_their_text(harness: Harness) -> None:
    await harness.send(service_record(unit_cost=20.5, planned_units_per_week=10, no_of_adults_being_cared_for=None))

    assert harness.deadletters.bodies == []
    [body] = harness.validated.bodies
    record = RecordValidated.model_validate(body).record
    assert (record["unit_cost"], record["planned_units_per_week"]) == ("20.5", "10")


async def test_an_unknown_cld_action_is_dead_lettered_never_taken_for_an_upsert() -> None:
    from cld_runtime.messages import RawMessage
    from cld_validation.intake import Rejected, read_message

    value = json.dumps(service_record(la_code=None)).encode()
    for action in (b"delete", b"WITHDRAWN", b"upsert "):
        msg = RawMessage(
            value=value,
            key=b"318",
            headers={"cld-source": b"case-system", "cld-event-id": b"ev-1", "cld-action": action},
            topic="cld.events.raw.v1",
            partition=0,
            offset=1,
        )
        outcome = read_message(msg, max_bytes=256 * 1024, tenants=None)
        if action.strip() == b"upsert":
            assert not isinstance(outcome, Rejected)  # surrounding spaces are trimmed, as every header
            continue
        assert isinstance(outcome, Rejected), action
        assert outcome.reason is DeadLetterReason.UNKNOWN_ACTION
        assert "delete" not in outcome.detail.lower()


async def test_each_finding_on_the_validated_topic_carries_its_fix(harness: Harness) -> None:
    await harness.send(service_record(gender="female", nhs_number="9990001234"), headers={"cld-event-id": "fix-1"})
    [event] = [RecordValidated.model_validate(b) for b in harness.validated.bodies]
    by_field = {f.field: f for f in event.findings}
    assert "'Female'" in (by_field["Gender"].fix or "")
    assert by_field["NHS Number"].fix  # known or honestly "no automatic fix known"
    assert all("9990001234" not in (f.fix or "") for f in event.findings)
