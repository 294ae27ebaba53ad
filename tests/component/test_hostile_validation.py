"""Hostile and broken input on the raw topic (issue 6, section 5): each bad message becomes one dead letter
with its reason and pointer (never its payload), and the good message behind it on the same partition still
comes out validated: no crash, no stalled partition."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cld_schemas import topics
from cld_schemas.events import DeadLetter, DeadLetterReason, RecordValidated
from cld_validation.intake import date_fields
from tests.component import test_validation_service
from tests.component.test_validation_service import Harness
from tests.support.records import service_record

harness = test_validation_service.harness  # by assignment: no F811

SECRET = "Zebedee Quockerwodger"
SOURCE = {"cld-source": "case-system"}


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def nested(depth: int) -> bytes:
    return b'{"first_name": ' + b"[" * depth + b"]" * depth + b"}"


CASES: list[tuple[str, bytes | None, bytes | None, dict[str, Any], DeadLetterReason]] = [
    ("truncated-json", b'{"first_name": "' + SECRET.encode(), b"318", SOURCE, DeadLetterReason.NOT_JSON),
    ("not-utf8", b'{"first_name": "\xff' + SECRET.encode() + b'"}', b"318", SOURCE, DeadLetterReason.NOT_UTF8),
    ("utf16", json.dumps(service_record()).encode("utf-16"), b"318", SOURCE, DeadLetterReason.NOT_UTF8),
    ("empty", b"", b"318", SOURCE, DeadLetterReason.NOT_AN_OBJECT),
    ("tombstone", None, b"318", SOURCE, DeadLetterReason.NOT_AN_OBJECT),
    ("json-array", dumps([service_record()]), b"318", SOURCE, DeadLetterReason.NOT_AN_OBJECT),
    ("json-string", dumps(SECRET), b"318", SOURCE, DeadLetterReason.NOT_AN_OBJECT),
    ("too-deep", b"[" * 100_000 + b"]" * 100_000, b"318", SOURCE, DeadLetterReason.NOT_JSON),
    ("too-deep-object", b'{"a":' * 5_000 + b"1" + b"}" * 5_000, b"318", SOURCE, DeadLetterReason.NOT_JSON),
    ("deep-in-a-field", nested(500), b"318", SOURCE, DeadLetterReason.WRONG_TYPE),
    ("huge-integer", b'{"unit_cost": ' + b"9" * 5000 + b"}", b"318", SOURCE, DeadLetterReason.NOT_JSON),
    ("wrong-type-list", dumps(service_record(first_name=[SECRET])), b"318", SOURCE, DeadLetterReason.WRONG_TYPE),
    ("wrong-type-bool", dumps(service_record(gender=True)), b"318", SOURCE, DeadLetterReason.WRONG_TYPE),
    ("unknown-field", dumps({**service_record(), SECRET: "x"}), b"318", SOURCE, DeadLetterReason.UNKNOWN_FIELD),
    (
        "thousands-of-fields",
        dumps({f"field_{i}": "v" for i in range(10_000)}),
        b"318",
        SOURCE,
        DeadLetterReason.UNKNOWN_FIELD,
    ),
    ("oversize", dumps(service_record(event_description="x" * 300_000)), b"318", SOURCE, DeadLetterReason.TOO_LARGE),
    ("key-not-ascii", dumps(service_record(la_code=None)), "३१८".encode(), SOURCE, DeadLetterReason.MISSING_LA_CODE),
    ("key-not-la", dumps(service_record(la_code=None)), b"../318", SOURCE, DeadLetterReason.MISSING_LA_CODE),
    ("la-mismatch", dumps(service_record()), b"319", SOURCE, DeadLetterReason.LA_CODE_MISMATCH),
    (
        "source-header-huge",
        dumps(service_record()),
        b"318",
        {"cld-source": "case-system" * 1000},
        DeadLetterReason.UNKNOWN_SOURCE,
    ),
]


@pytest.mark.parametrize(("value", "key", "headers", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_a_bad_message_is_one_dead_letter_and_the_next_good_one_flows(
    harness: Harness, value: bytes | None, key: bytes | None, headers: dict[str, Any], reason: DeadLetterReason
) -> None:
    await harness.broker.publish(value, topics.RAW, key=key, headers=headers)
    await harness.send(service_record(), headers={**SOURCE, "cld-event-id": "good-after"})

    [body] = harness.deadletters.bodies
    letter = DeadLetter.model_validate(body)
    assert letter.reason is reason, letter.detail
    assert (letter.topic, letter.partition, letter.offset) == (topics.RAW, 0, 0)
    assert letter.payload_bytes == len(value or b"")
    text = json.dumps(body)
    for leaked in (SECRET, "Zebedee", "9990000018", "field_1"):
        assert leaked not in text
    assert [b["provenance"]["event_id"] for b in harness.validated.bodies] == ["good-after"]


async def test_formula_injection_is_accepted_as_data(harness: Harness) -> None:
    payloads = ["=cmd|' /C calc'!A0", "+1+1", "@SUM(A1:A9)", '=HYPERLINK("http://x")']
    for i, p in enumerate(payloads):
        await harness.send(service_record(event_description=p), headers={**SOURCE, "cld-event-id": f"f{i}"})

    events = [RecordValidated.model_validate(b) for b in harness.validated.bodies]
    assert [e.record["event_description"] for e in events] == payloads
    assert harness.deadletters.bodies == []


async def test_garbage_headers_do_not_stop_a_readable_record(harness: Harness) -> None:
    headers = {
        **SOURCE,
        "cld-event-id": "not an id \u00e9\u0000",
        "cld-received-at": "not a time",
        # (an unknown cld-action is refused, never guessed: test_strict_validation.py)
        "cld-opt-out": "\u00ff\u0000",
        "cld-channel": "smtp",
    }
    await harness.broker.publish(dumps(service_record()), topics.RAW, key=b"318", headers=headers)

    event = RecordValidated.model_validate(harness.validated.bodies[0])
    assert event.provenance.event_id == f"kafka:{topics.RAW}:0:0"  # the position, when the id is unusable
    assert event.withdrawn is False
    assert event.provenance.opt_outs == ["unrecognised"]  # unreadable flags: fail closed


async def test_replayed_event_ids_come_out_with_that_id_for_downstream_dedupe(harness: Harness) -> None:
    for source in ("case-system", "case-system", "care-provider"):
        await harness.send(service_record(), headers={"cld-source": source, "cld-event-id": "replayed"})

    events = [RecordValidated.model_validate(b) for b in harness.validated.bodies]
    assert [e.provenance.event_id for e in events] == ["replayed"] * 3
    # Two sources reusing one id stay apart: the event's identity is (LA, source, event id).
    assert [e.provenance.source for e in events] == ["case-system", "case-system", "care-provider"]


@pytest.mark.parametrize("field", sorted(date_fields())[:3])
async def test_impossible_iso_dates_become_findings_not_crashes(harness: Harness, field: str) -> None:
    await harness.send(service_record(**{field: "2025-02-30"}), headers=SOURCE)
    event = RecordValidated.model_validate(harness.validated.bodies[0])
    assert event.record[field] == "30/02/2025"  # normalised in form only; the DQ rules judge the value
    assert event.failed is True
