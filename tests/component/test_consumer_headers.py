"""Headers a consumer cannot read or cannot trust (issue 10, findings 1 and 11): every record of the batch still
reaches the handler; the bad one becomes exactly one dead letter with its reason and the records around it flow.

FastStream's default batch parser decoded every header value as UTF-8 before the handler ran: one
``cld-source: b"\\xff\\xfe"`` lost the whole batch without a dead letter. The batches here are handed to the
subscriber as the real consumer hands them (``process_message`` with a tuple of ``ConsumerRecord``), because
the in-memory broker's ``publish`` only takes text headers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker, TestKafkaBroker

from cld_pseudonymisation.service import PseudonymisationSettings
from cld_pseudonymisation.service import create_app as pseudonymisation_app
from cld_schemas import topics
from cld_schemas.events import DeadLetter, DeadLetterReason
from cld_submission.adapters.transport import FileExportTransport
from cld_submission.entrypoints.app import create_app as submission_app
from cld_submission.entrypoints.settings import SubmissionSettings
from cld_validation.service import ValidationSettings
from cld_validation.service import create_app as validation_app
from tests.component.test_poison_submission import LA_CODE, PERIOD_END, PERIOD_START, a_validated
from tests.component.test_pseudonymisation_service import TEST_KEY, validated
from tests.component.test_submission_service import operators_registry, policy_with_bases
from tests.support.capture import Captured, capture
from tests.support.records import service_record
from tests.support.tenancy import DEFAULT_SOURCE, make_tenancy

Headers = list[tuple[str, bytes]]


def record(topic: str, offset: int, value: bytes | None, headers: Headers, key: bytes | None = b"318") -> Any:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=1_700_000_000_000 + offset,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=headers,
    )


def subscriber(broker: KafkaBroker, topic: str, group: str) -> Any:
    [sub] = [s for s in broker.subscribers if topic in s.topic_names and getattr(s, "group_id", None) == group]
    return sub


def raw_value(i: int) -> bytes:
    return json.dumps(service_record(event_reference=f"EV{i:05d}")).encode()


def good_headers(i: int) -> Headers:
    return [("cld-source", DEFAULT_SOURCE.encode()), ("cld-event-id", f"ev-{i}".encode())]


BAD_HEADERS: list[tuple[str, Headers, DeadLetterReason]] = [
    ("source-not-utf8", [("cld-source", b"\xff\xfe"), ("cld-event-id", b"bad")], DeadLetterReason.UNREADABLE_HEADER),
    ("event-id-not-utf8", [("cld-source", b"x"), ("cld-event-id", b"\xc3\x28")], DeadLetterReason.UNREADABLE_HEADER),
    ("other-header-not-utf8", [("traceparent", b"\x80\x81\x82")], DeadLetterReason.UNREADABLE_HEADER),
    ("two-sources", [("cld-source", b"case-system"), ("cld-source", b"other")], DeadLetterReason.AMBIGUOUS_HEADER),
    (
        "two-actions-any-case",
        [("cld-action", b"upsert"), ("CLD-Action", b"withdraw")],
        DeadLetterReason.AMBIGUOUS_HEADER,
    ),
    ("two-event-ids", [("cld-event-id", b"a"), ("cld-event-id", b"b")], DeadLetterReason.AMBIGUOUS_HEADER),
]
IDS = [c[0] for c in BAD_HEADERS]
CASES = [c[1:] for c in BAD_HEADERS]


def assert_one_letter(
    deadletters: Captured, *, topic: str, offset: int, reason: DeadLetterReason, service: str
) -> None:
    [body] = deadletters.bodies
    letter = DeadLetter.model_validate(body)
    assert (letter.reason, letter.topic, letter.offset, letter.service) == (reason, topic, offset, service)
    for value in ("\\xff", "other", "withdraw", "case-system"):
        assert value not in letter.detail
    assert deadletters.headers[0]["cld-deadletter-reason"] == reason.value


# -- validation: raw topic ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("bad", "reason"), CASES, ids=IDS)
async def test_validation_a_bad_header_loses_nothing_else_of_its_batch(bad: Headers, reason: DeadLetterReason) -> None:
    app = validation_app(
        ValidationSettings(kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING"), tenants=make_tenancy().registry
    )
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    out, deadletters = capture(broker, topics.VALIDATED), capture(broker, topics.DEADLETTER)
    async with TestKafkaBroker(broker):
        batch: Sequence[Any] = (
            *(record(topics.RAW, i, raw_value(i), good_headers(i)) for i in range(40)),
            record(topics.RAW, 40, raw_value(40), bad),
            *(record(topics.RAW, i, raw_value(i), good_headers(i)) for i in range(41, 81)),
        )
        await subscriber(broker, topics.RAW, "cld-validation").process_message(batch)

    ids = [b["provenance"]["event_id"] for b in out.bodies]
    assert ids == [f"ev-{i}" for i in range(81) if i != 40], f"{len(ids)} of 80 valid records validated"
    assert_one_letter(deadletters, topic=topics.RAW, offset=40, reason=reason, service="validation")


async def test_validation_the_same_header_twice_with_the_same_value_is_not_ambiguous() -> None:
    app = validation_app(
        ValidationSettings(kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING"), tenants=make_tenancy().registry
    )
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    out, deadletters = capture(broker, topics.VALIDATED), capture(broker, topics.DEADLETTER)
    async with TestKafkaBroker(broker):
        headers = [*good_headers(1), ("cld-source", DEFAULT_SOURCE.encode())]
        await subscriber(broker, topics.RAW, "cld-validation").process_message(
            (record(topics.RAW, 0, raw_value(1), headers),)
        )
    assert deadletters.bodies == []
    assert [b["provenance"]["source"] for b in out.bodies] == [DEFAULT_SOURCE]


# -- pseudonymisation: validated topic ------------------------------------------------------------------------


@pytest.mark.parametrize(("bad", "reason"), CASES, ids=IDS)
async def test_pseudonymisation_a_bad_header_loses_nothing_else_of_its_batch(
    bad: Headers, reason: DeadLetterReason
) -> None:
    app = pseudonymisation_app(
        PseudonymisationSettings(kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING", pseudo_key=TEST_KEY),
        tenants=make_tenancy().registry,
    )
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    out, deadletters = capture(broker, topics.PSEUDONYMISED), capture(broker, topics.DEADLETTER)

    def value(i: int) -> bytes:
        return validated(f"ev-{i}", event_reference=f"EV{i:05d}").model_dump_json().encode()

    async with TestKafkaBroker(broker):
        batch = (
            *(record(topics.VALIDATED, i, value(i), good_headers(i)) for i in range(10)),
            record(topics.VALIDATED, 10, value(10), bad),
            *(record(topics.VALIDATED, i, value(i), good_headers(i)) for i in range(11, 21)),
        )
        await subscriber(broker, topics.VALIDATED, "cld-pseudonymisation").process_message(batch)

    ids = [b["provenance"]["event_id"] for b in out.bodies]
    assert ids == [f"ev-{i}" for i in range(21) if i != 10]
    assert_one_letter(deadletters, topic=topics.VALIDATED, offset=10, reason=reason, service="pseudonymisation")


# -- submission: validated and pseudonymised topics -----------------------------------------------------------


@pytest.mark.parametrize(("bad", "reason"), CASES, ids=IDS)
async def test_submission_a_bad_header_loses_nothing_else_of_its_batch(
    tmp_path: Path, bad: Headers, reason: DeadLetterReason
) -> None:
    settings = SubmissionSettings(
        kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING", state_dir=tmp_path / "state"
    )
    registry, _keys = operators_registry()
    app = submission_app(
        settings, transport=FileExportTransport(tmp_path / "export"), tenants=registry, policy=policy_with_bases()
    )
    broker: KafkaBroker = app.state.broker
    deadletters = capture(broker, topics.DEADLETTER)

    def value(i: int) -> bytes:
        return a_validated(f"ev-{i}", reference=f"R{i}").model_dump_json().encode()

    async with TestKafkaBroker(broker), app.router.lifespan_context(app):
        batch = (
            *(record(topics.VALIDATED, i, value(i), good_headers(i), key=LA_CODE.encode()) for i in range(10)),
            record(topics.VALIDATED, 10, value(10), bad, key=LA_CODE.encode()),
            *(record(topics.VALIDATED, i, value(i), good_headers(i), key=LA_CODE.encode()) for i in range(11, 21)),
        )
        await subscriber(broker, topics.VALIDATED, "cld-submission").process_message(batch)
        in_scope = app.state.workflow.state.count_in_scope(LA_CODE, PERIOD_START, PERIOD_END)

    assert in_scope == 20
    assert_one_letter(deadletters, topic=topics.VALIDATED, offset=10, reason=reason, service="submission")
