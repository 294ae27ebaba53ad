"""Poison messages at the submission service's two consumers (``cld.records.validated.v1`` into the record state,
``cld.records.pseudonymised.v1`` into the pseudonymised table): each becomes one dead letter (reason and
pointer, never the payload) and the good record behind it on the same partition is still stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from cld_schemas import topics
from cld_schemas.events import DeadLetter, DeadLetterReason, Provenance, RecordPseudonymised, RecordValidated
from cld_schemas.spec import Release
from cld_submission.adapters.sqlite_record_store import StateStore
from cld_submission.adapters.transport import FileExportTransport
from cld_submission.entrypoints.app import create_app
from cld_submission.entrypoints.settings import SubmissionSettings
from tests.component.test_poison_pseudonymisation import POISON, SECRET, assert_no_leak
from tests.component.test_submission_service import operators_registry, policy_with_bases
from tests.support.builders import LA_CODE, a_request_row
from tests.support.capture import Captured, capture

PERIOD_START = datetime(2024, 4, 1, tzinfo=UTC).date()
PERIOD_END = datetime(2025, 3, 31, tzinfo=UTC).date()
T0 = datetime(2025, 4, 2, 9, 0, tzinfo=UTC)
PURPOSE = "test-purpose"


def a_validated(event_id: str, reference: str = "R1") -> RecordValidated:
    return RecordValidated(
        la_code=LA_CODE,
        release=Release.R1,
        provenance=Provenance(source="case-system", event_id=event_id, received_at=T0 + timedelta(seconds=1)),
        record=a_request_row(event_reference=reference),
        findings=[],
        failed=False,
        validated_at=T0,
    )


def a_pseudonymised(event_id: str) -> RecordPseudonymised:
    return RecordPseudonymised(
        la_code=LA_CODE,
        provenance=Provenance(source="case-system", event_id=event_id, received_at=T0),
        key_id="test-key",
        purpose=PURPOSE,
        record={"nhs_number_pseudo": "pseudo-1"},
        pseudonymised_at=T0,
    )


GOOD_VALIDATED = a_validated("template").model_dump_json().encode()
GOOD_PSEUDONYMISED = a_pseudonymised("template").model_dump_json().encode()


def huge_int_in(event: bytes) -> bytes:
    out = event.replace(b'"withdrawn":false', b'"withdrawn":' + b"9" * 5000, 1)
    assert out != event
    return out


# Per topic: the shared poison cases, plus the huge integer inside a well-formed event of that topic's type,
# plus a well-formed event of the OTHER topic's type (an object, but not the event this consumer reads).
VALIDATED_POISON = [
    *POISON,
    ("huge-int-in-this-event", huge_int_in(GOOD_VALIDATED), DeadLetterReason.NOT_JSON),
    ("a-record-pseudonymised", GOOD_PSEUDONYMISED, DeadLetterReason.WRONG_TYPE),
]
PSEUDONYMISED_POISON = [
    *(c for c in POISON if c[0] != "another-event-type"),  # that one IS a RecordPseudonymised
    ("huge-int-in-this-event", huge_int_in(GOOD_PSEUDONYMISED), DeadLetterReason.NOT_JSON),
    ("a-record-validated", GOOD_VALIDATED, DeadLetterReason.WRONG_TYPE),
]


@dataclass
class Harness:
    broker: KafkaBroker
    state: StateStore
    deadletters: Captured

    def in_scope(self) -> int:
        return self.state.count_in_scope(LA_CODE, PERIOD_START, PERIOD_END)

    def letter(self) -> tuple[DeadLetter, dict[str, object]]:
        [body] = self.deadletters.bodies
        return DeadLetter.model_validate(body), body


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = SubmissionSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        log_level="WARNING",
        state_dir=tmp_path / "state",
        consumer_batch_timeout_ms=1,
    )
    registry, _keys = operators_registry()
    app = create_app(
        settings, transport=FileExportTransport(tmp_path / "export"), tenants=registry, policy=policy_with_bases()
    )
    broker: KafkaBroker = app.state.broker
    deadletters = capture(broker, topics.DEADLETTER)
    async with TestKafkaBroker(broker), app.router.lifespan_context(app):
        yield Harness(broker, app.state.workflow.state, deadletters)


def assert_points_at(letter: DeadLetter, topic: str, value: bytes | None) -> None:
    assert letter.service == "submission"
    assert (letter.topic, letter.partition, letter.offset, letter.key) == (topic, 0, 0, LA_CODE)
    assert letter.payload_bytes == len(value or b"")
    assert letter.payload_hmac is None  # no dead-letter key in this deployment: no fingerprint at all


@pytest.mark.parametrize(("value", "reason"), [c[1:] for c in VALIDATED_POISON], ids=[c[0] for c in VALIDATED_POISON])
async def test_poison_on_the_validated_topic_is_dead_lettered_and_the_next_record_is_stored(
    harness: Harness, value: bytes | None, reason: DeadLetterReason
) -> None:
    await harness.broker.publish(value, topics.VALIDATED, key=LA_CODE.encode())
    good = a_validated("good-after")
    await harness.broker.publish(good.model_dump_json().encode(), topics.VALIDATED, key=LA_CODE.encode())

    letter, body = harness.letter()
    assert letter.reason is reason, letter.detail
    assert_points_at(letter, topics.VALIDATED, value)
    assert_no_leak(body)
    assert harness.in_scope() == 1
    [stored] = harness.state.iter_in_scope(LA_CODE, PERIOD_START, PERIOD_END)
    assert stored.event_id == "good-after"


@pytest.mark.parametrize(
    ("value", "reason"), [c[1:] for c in PSEUDONYMISED_POISON], ids=[c[0] for c in PSEUDONYMISED_POISON]
)
async def test_poison_on_the_pseudonymised_topic_is_dead_lettered_and_the_next_record_is_stored(
    harness: Harness, value: bytes | None, reason: DeadLetterReason
) -> None:
    await harness.broker.publish(value, topics.PSEUDONYMISED, key=LA_CODE.encode())
    good = a_pseudonymised("good-after")
    await harness.broker.publish(good.model_dump_json().encode(), topics.PSEUDONYMISED, key=LA_CODE.encode())

    letter, body = harness.letter()
    assert letter.reason is reason, letter.detail
    assert_points_at(letter, topics.PSEUDONYMISED, value)
    assert_no_leak(body)
    stored = harness.state.pseudonymised_for(LA_CODE, PURPOSE, ["good-after", "template", SECRET])
    assert stored == {"good-after": {"nhs_number_pseudo": "pseudo-1"}}


async def test_poison_inside_a_batch_does_not_hold_back_its_neighbours(harness: Harness) -> None:
    good = [a_validated(f"good-{i}", reference=f"R{i}").model_dump_json().encode() for i in range(3)]
    poison = [c[1] or b"" for c in POISON[:4]]
    await harness.broker.publish_batch(good[0], *poison, good[1], good[2], topic=topics.VALIDATED)

    assert [DeadLetter.model_validate(b).reason for b in harness.deadletters.bodies] == [c[2] for c in POISON[:4]]
    stored = {r.event_id for r in harness.state.iter_in_scope(LA_CODE, PERIOD_START, PERIOD_END)}
    assert stored == {"good-0", "good-1", "good-2"}
    assert json.dumps(harness.deadletters.bodies).count("submission") == 4
