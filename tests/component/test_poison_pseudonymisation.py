"""Poison messages on ``cld.records.validated.v1`` at the pseudonymisation service: each becomes one dead letter
(reason and pointer, never the payload) and the good record behind it on the same partition still comes out
pseudonymised. FastStream json-decodes bodies before a handler runs unless the subscriber has its own decoder;
a 5000-digit integer or nesting deeper than Python's recursion limit raised there, the batch was nacked and
re-read for ever: the partition stalled."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from cld_schemas import topics
from cld_schemas.events import DeadLetter, DeadLetterReason, Provenance, RecordPseudonymised
from tests.component import test_pseudonymisation_service
from tests.component.test_pseudonymisation_service import Harness, validated
from tests.support.records import service_record

harness = test_pseudonymisation_service.harness  # by assignment: no F811

SECRET = "Zebedee Quockerwodger"
"""Stands for personal data in a payload: it must never reach a dead letter."""


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def a_record_pseudonymised() -> bytes:
    """A well-formed event of another type: an object, but not a RecordValidated."""
    return (
        RecordPseudonymised(
            la_code="318",
            provenance=Provenance(source="test", event_id=SECRET, received_at=datetime.now(UTC)),
            key_id="k",
            purpose="p",
            record={"nhs_number_pseudo": SECRET},
            pseudonymised_at=datetime.now(UTC),
        )
        .model_dump_json()
        .encode()
    )


def huge_int_in(event: bytes) -> bytes:
    """A readable event with one value replaced by an integer beyond Python's 4300-digit limit."""
    return event.replace(b'"failed":false', b'"failed":' + b"9" * 5000, 1)


GOOD = validated("any").model_dump_json().encode()
assert b'"failed":false' in GOOD

POISON: list[tuple[str, bytes | None, DeadLetterReason]] = [
    ("huge-int-in-event", huge_int_in(GOOD), DeadLetterReason.NOT_JSON),
    ("huge-int-in-record", b'{"record": {"unit_cost": ' + b"9" * 5000 + b"}}", DeadLetterReason.NOT_JSON),
    ("huge-int-alone", b"9" * 5000, DeadLetterReason.NOT_JSON),
    ("too-deep-array", b"[" * 100_000 + b"]" * 100_000, DeadLetterReason.NOT_JSON),
    ("too-deep-object", b'{"a":' * 5_000 + b"1" + b"}" * 5_000, DeadLetterReason.NOT_JSON),
    ("deep-in-a-field", b'{"record": ' + b"[" * 100 + b"]" * 100 + b"}", DeadLetterReason.WRONG_TYPE),
    ("not-utf8", b'{"la_code": "\xff' + SECRET.encode() + b'"}', DeadLetterReason.NOT_UTF8),
    ("utf16", GOOD.decode().encode("utf-16"), DeadLetterReason.NOT_UTF8),
    ("truncated", GOOD[: len(GOOD) // 2], DeadLetterReason.NOT_JSON),
    ("empty", b"", DeadLetterReason.NOT_AN_OBJECT),
    ("tombstone", None, DeadLetterReason.NOT_AN_OBJECT),
    ("json-array", dumps([json.loads(GOOD)]), DeadLetterReason.NOT_AN_OBJECT),
    ("json-string", dumps(SECRET), DeadLetterReason.NOT_AN_OBJECT),
    ("json-null", b"null", DeadLetterReason.NOT_AN_OBJECT),
    ("raw-source-record", dumps(service_record(first_name=SECRET)), DeadLetterReason.WRONG_TYPE),
    ("another-event-type", a_record_pseudonymised(), DeadLetterReason.WRONG_TYPE),
    ("extra-field", dumps({**json.loads(GOOD), SECRET: 1}), DeadLetterReason.WRONG_TYPE),
]
"""(case id, message value, expected dead-letter reason): shared with ``test_poison_submission``."""


def assert_no_leak(body: dict[str, Any]) -> None:
    text = json.dumps(body)
    for leaked in (SECRET, "Zebedee", "9990000018", "99999"):
        assert leaked not in text


@pytest.mark.parametrize(("value", "reason"), [c[1:] for c in POISON], ids=[c[0] for c in POISON])
async def test_a_poison_message_is_one_dead_letter_and_the_next_record_flows(
    harness: Harness, value: bytes | None, reason: DeadLetterReason
) -> None:
    await harness.broker.publish(value, topics.VALIDATED, key=b"318")
    await harness.send(validated("good-after"))

    [body] = harness.deadletters.bodies
    letter = DeadLetter.model_validate(body)
    assert letter.reason is reason, letter.detail
    assert letter.service == "pseudonymisation"
    assert (letter.topic, letter.partition, letter.offset, letter.key) == (topics.VALIDATED, 0, 0, "318")
    assert letter.payload_bytes == len(value or b"")
    assert letter.payload_hmac is None  # no dead-letter key in this deployment: no fingerprint at all
    assert_no_leak(body)
    assert [RecordPseudonymised.model_validate(b).provenance.event_id for b in harness.out.bodies] == ["good-after"]
    assert harness.metric("cld_deadletters_total", {"service": "pseudonymisation", "reason": reason.value}) == 1


async def test_poison_inside_a_batch_does_not_hold_back_its_neighbours(harness: Harness) -> None:
    good = [validated(f"good-{i}").model_dump_json().encode() for i in range(3)]
    poison = [c[1] or b"" for c in POISON[:4]]
    await harness.broker.publish_batch(good[0], *poison, good[1], good[2], topic=topics.VALIDATED)

    assert [DeadLetter.model_validate(b).reason for b in harness.deadletters.bodies] == [c[2] for c in POISON[:4]]
    out = [RecordPseudonymised.model_validate(b).provenance.event_id for b in harness.out.bodies]
    assert out == ["good-0", "good-1", "good-2"]
