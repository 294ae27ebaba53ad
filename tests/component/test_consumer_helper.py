"""``cld_runtime.consumer`` on its own, in the in-memory broker: a batch handler that decodes, forwards and
dead-letters through a ``ConsumedBatch`` gets every record to exactly one visible place, counted once per batch;
a handler that leaves a record without an outcome is reported."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from prometheus_client import CollectorRegistry

from cld_runtime.broker import BatchPublisher, make_broker
from cld_runtime.consumer import ConsumedBatch, Consumer, read_event
from cld_runtime.messages import RawMessage
from cld_runtime.settings import Settings
from cld_schemas import topics
from cld_schemas.events import DeadLetterReason, RecordValidated
from tests.component.test_poison_submission import a_validated
from tests.support.capture import capture

LOG = logging.getLogger("test.consumer")


def _setup(handler_kind: str) -> tuple[Any, CollectorRegistry, Any, Any]:
    registry = CollectorRegistry()
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", service_name="helper", log_level="WARNING")
    broker = make_broker(settings, registry=registry)
    out = BatchPublisher(broker, broker.publisher(topics.PSEUDONYMISED), topic=topics.PSEUDONYMISED)
    consumer = Consumer.create(broker, settings, registry=registry, consumed=[topics.VALIDATED], log=LOG)

    async def forward_readable(batch: ConsumedBatch) -> None:
        for msg in batch.messages:
            event = await batch.decode(msg, RecordValidated)
            if event is not None:
                await batch.forward(out, msg.value or b"", key=event.la_code.encode(), headers={"cld-event-id": "x"})

    async def forget_everything(batch: ConsumedBatch) -> None:
        return None

    handler = forward_readable if handler_kind == "forward" else forget_everything
    consumer.subscribe(topics.VALIDATED, group_id="helper", handler=handler, title="t", description="d")
    return broker, registry, capture(broker, topics.PSEUDONYMISED), capture(broker, topics.DEADLETTER)


def _count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, {"service": "helper", "topic": topics.VALIDATED, **labels}) or 0.0


async def test_each_record_is_forwarded_or_dead_lettered_and_counted_once() -> None:
    broker, registry, out, deadletters = _setup("forward")
    good = a_validated("e-1").model_dump_json().encode()
    async with TestKafkaBroker(broker) as br:
        for value in (good, b"{not json", b"[1]", good):
            await br.publish(value, topics.VALIDATED, key=b"318")
    assert len(out.bodies) == 2
    assert [d["reason"] for d in deadletters.bodies] == [DeadLetterReason.NOT_JSON, DeadLetterReason.NOT_AN_OBJECT]
    assert all("payload" not in d for d in deadletters.bodies)  # a pointer and the reason, never the payload
    assert _count(registry, "cld_consumed_records_total") == 4
    assert _count(registry, "cld_consumer_outcomes_total", outcome="forwarded") == 2
    assert _count(registry, "cld_consumer_outcomes_total", outcome="deadlettered") == 2
    assert json.loads(good) == out.bodies[0]


async def test_a_handler_that_leaves_a_record_without_an_outcome_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    broker, registry, out, deadletters = _setup("forget")
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        async with TestKafkaBroker(broker) as br:
            await br.publish(b"{}", topics.VALIDATED, key=b"318")
    assert "do not add up" in caplog.text
    assert _count(registry, "cld_consumed_records_total") == 0
    assert out.bodies == []
    assert deadletters.bodies == []


def test_read_event_refuses_a_bad_header_before_reading_the_value() -> None:
    msg = RawMessage(
        value=a_validated("e-1").model_dump_json().encode(),
        key=b"318",
        headers={"cld-source": b"\xff"},
        topic=topics.VALIDATED,
        partition=0,
        offset=0,
        header_items=(("cld-source", b"\xff"),),
    )
    refused = read_event(msg, RecordValidated)
    assert not isinstance(refused, RecordValidated)
    assert refused.reason is DeadLetterReason.UNREADABLE_HEADER
