"""cld_consumer_lag arithmetic (cld_runtime.lag.compute_lag)."""

from __future__ import annotations

from aiokafka import TopicPartition

from cld_runtime.lag import compute_lag


def test_lag_is_end_minus_committed_and_whole_partition_when_nothing_committed() -> None:
    a, b, c = (TopicPartition("t", p) for p in range(3))
    assert compute_lag({a: 10, b: 7, c: 5}, {a: 4, b: None, c: 9}) == {a: 6, b: 7, c: 0}


def test_a_failed_refresh_is_retried_soon_with_backoff_capped_at_the_interval() -> None:
    from prometheus_client import CollectorRegistry

    from cld_runtime.lag import ConsumerLagMonitor
    from cld_runtime.settings import Settings

    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", consumer_lag_interval_seconds=5)
    monitor = ConsumerLagMonitor(settings, group="g", topics=["t"], registry=CollectorRegistry())
    assert [monitor.retry_delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 5.0]


async def test_the_watch_middleware_nudges_the_monitor_after_each_processed_batch() -> None:
    from faststream.kafka import KafkaBroker, TestKafkaBroker
    from prometheus_client import CollectorRegistry

    from cld_runtime.lag import ConsumerLagMonitor
    from cld_runtime.settings import Settings

    monitor = ConsumerLagMonitor(
        Settings(kafka_bootstrap_servers="127.0.0.1:1"), group="g", topics=["t"], registry=CollectorRegistry()
    )
    broker = KafkaBroker()
    handled: list[bytes] = []

    @broker.subscriber("t", group_id="g", batch=True)
    async def consume(body: list[bytes]) -> None:
        assert not monitor._nudged.is_set()  # the nudge comes after the handler
        handled.extend(body)

    monitor.watch(broker)
    async with TestKafkaBroker(broker):
        await broker.publish(b"x", "t")
    assert handled
    assert monitor._nudged.is_set()
