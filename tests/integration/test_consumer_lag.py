"""cld_consumer_lag is timely (issue 10, finding 11: it lagged far behind): on a real broker, with a refresh
interval far longer than the test's waits, the gauge shows a backlog and then drains to 0 within a bounded wait,
because the monitor refreshes right after each batch the service's subscriber processed (``watch(broker)``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from prometheus_client import CollectorRegistry

from cld_runtime.lag import ConsumerLagMonitor
from cld_runtime.settings import Settings

pytestmark = pytest.mark.integration

INTERVAL = 120.0
"""Far longer than any wait below: only the after-batch refresh can make the gauge move in time."""


async def _wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    """Poll ``predicate`` until true or ``seconds`` passed (a bounded wait)."""
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)  # poll interval of a bounded wait
    return predicate()


async def test_the_lag_gauge_follows_the_consumer_without_waiting_for_the_interval(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        consumer_lag_interval_seconds=INTERVAL,
        service_name="lagtest",
    )
    topic, group = f"{topic_prefix}lag", f"{topic_prefix}group"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
        for i in range(30):
            await producer.send_and_wait(topic, f"m{i}".encode(), partition=0)
    finally:
        await producer.stop()
        await admin.close()

    registry = CollectorRegistry()
    monitor = ConsumerLagMonitor(settings, group=group, topics=[topic], registry=registry)

    def lag() -> float | None:
        return registry.get_sample_value("cld_consumer_lag", {"group": group, "topic": topic, "partition": "0"})

    await monitor.start()
    try:
        assert await _wait_for(lambda: lag() == 30, seconds=30), lag()  # the first refresh at start
        first = monitor.refreshes

        broker = KafkaBroker(kafka_bootstrap)
        release = asyncio.Event()
        seen: list[int] = []

        @broker.subscriber(
            topic,
            group_id=group,
            batch=True,
            max_records=10,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )
        async def consume(message: KafkaMessage) -> None:
            await release.wait()  # hold the first batch until the monitor is watching
            seen.append(len(message.raw_message))  # type: ignore[arg-type]

        monitor.watch(broker)
        await broker.start()
        try:
            release.set()
            drained = await _wait_for(lambda: lag() == 0, seconds=20)
        finally:
            await broker.stop()
        assert drained, f"lag {lag()} after consuming {sum(seen)} of 30 messages"
        assert sum(seen) == 30
        assert monitor.refreshes > first  # refreshed after batches, long before the 120 s interval
    finally:
        await monitor.stop()
