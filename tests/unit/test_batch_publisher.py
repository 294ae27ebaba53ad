"""``BatchPublisher`` (cld_runtime.broker) against the FastStream it is built on (issue 11 item 3).

It hands each record to the broker's producer as a ``KafkaPublishCommand`` (public API: what
``publisher.publish`` calls once its middlewares have run) and reads one private attribute, the Prometheus
middleware's metrics manager. These tests fail when a FastStream upgrade moves either: the wire record through
a connected producer, the in-memory broker's routing of the same command, and the published counter.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.publisher.producer import AioKafkaFastProducerImpl
from faststream.prometheus.manager import MetricsManager
from prometheus_client import CollectorRegistry

from cld_runtime.broker import BatchPublisher, make_broker
from cld_runtime.settings import Settings

TOPIC = "cld.records.validated.v1"


class FakeAIOKafkaProducer:
    """Records what aiokafka's ``send`` is given and returns a delivery future, as aiokafka does."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._closed = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._closed = True

    async def send(self, **record: Any) -> asyncio.Future[str]:
        self.sent.append(record)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        future.set_result("delivered")
        return future


def _broker(registry: CollectorRegistry) -> KafkaBroker:
    return make_broker(Settings(kafka_bootstrap_servers="127.0.0.1:1", service_name="test"), registry=registry)


def _publisher(broker: KafkaBroker) -> BatchPublisher:
    return BatchPublisher(broker, broker.publisher(TOPIC), topic=TOPIC)


async def test_a_connected_producer_gets_the_record_with_faststream_s_headers() -> None:
    broker = _broker(CollectorRegistry())
    fake = FakeAIOKafkaProducer()
    producer = AioKafkaFastProducerImpl(parser=None, decoder=None)
    await producer.connect(fake, serializer=None)  # type: ignore[arg-type]
    broker.config.broker_config.producer = producer
    publisher = _publisher(broker)

    future = await publisher.send(b'{"la_code":"318"}', key=b"318", headers={"cld-event-id": "e-1"})

    assert future is not None  # the caller gathers it once per batch
    assert await future == "delivered"
    [record] = fake.sent
    assert (record["topic"], record["key"], record["value"]) == (TOPIC, b"318", b'{"la_code":"318"}')
    names = [name for name, _ in record["headers"]]
    assert names == ["content-type", "correlation_id", "cld-event-id"]
    headers = dict(record["headers"])
    assert headers["cld-event-id"] == b"e-1"
    assert headers["content-type"] == b""  # the value is bytes as given, no JSON content type
    assert len(headers["correlation_id"]) == 36  # a uuid4, as FastStream's own publish sets


async def test_the_in_memory_broker_routes_the_same_command_to_subscribers() -> None:
    broker = _broker(CollectorRegistry())
    seen: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []

    @broker.subscriber(TOPIC, group_id="test")
    async def on_record(message: KafkaMessage) -> None:
        raw: Any = message.raw_message
        seen.append((raw.key, raw.value, dict(raw.headers)))

    publisher = _publisher(broker)
    async with TestKafkaBroker(broker):
        assert await publisher.send(b"{}", key=b"318", headers={"cld-event-id": "e-2"}) is None
    [(key, value, headers)] = seen
    assert (key, value, headers["cld-event-id"]) == (b"318", b"{}", b"e-2")
    assert "correlation_id" in headers


def test_the_published_counter_is_faststream_s_own() -> None:
    registry = CollectorRegistry()
    broker = _broker(registry)
    publisher = _publisher(broker)
    assert isinstance(publisher._metrics, MetricsManager)  # the private attribute this guards

    publisher._uncounted = 3  # three records sent since the last count
    publisher.count_published()
    publisher.count_published()  # nothing new: nothing added

    value = registry.get_sample_value(
        "faststream_published_messages_total",
        {"app_name": "test", "broker": "kafka", "destination": TOPIC, "status": "success"},
    )
    assert value == 3
