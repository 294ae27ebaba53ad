"""cld_consumer_lag{group,topic,partition}: how far the service's own consumer group is behind.

Lag = the partition's end offset - the group's committed offset. With nothing committed yet the group starts
at the log start (``auto_offset_reset="earliest"``), so the lag is end - log start (the whole partition when
nothing was deleted by retention). Computed by a pure function; ``ConsumerLagMonitor`` only fetches the offset
maps.

Timeliness (issue 10: the gauge lagged far behind). The monitor refreshes (a) every
``consumer_lag_interval_seconds`` (default 5 s, the local scrape interval), which is what shows a consumer that
stalls or falls behind while nothing is processed, and (b) :data:`REFRESH_DELAY_SECONDS` after a consumed batch
was processed, when ``watch(broker)`` added its middleware: the batch's commit follows the handler (FastStream's
acknowledgement middleware is outside every broker middleware), and the delay lets it land. So a draining
consumer's lag is current within about half a second, and a busy service refreshes at most twice a second.

The monitor never takes the service down: a broker that is unreachable at start-up or during a refresh is
logged and retried on the next interval, and ``stop()`` never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream import BaseMiddleware
from prometheus_client import CollectorRegistry, Gauge

from cld_runtime.settings import Settings

log = logging.getLogger("cld.runtime.lag")

REFRESH_DELAY_SECONDS = 0.5
"""After a processed batch: the wait for its commit to land, and the shortest spacing between refreshes."""
RETRY_FIRST_SECONDS = 0.5
"""First retry delay after a failed refresh; doubled per further failure, capped at the interval."""


def compute_lag(
    end_offsets: Mapping[TopicPartition, int],
    committed: Mapping[TopicPartition, int | None],
    start_offsets: Mapping[TopicPartition, int] | None = None,
) -> dict[TopicPartition, int]:
    """Per-partition lag; never negative (a commit can race ahead of a stale end offset).

    A partition without a committed offset counts from its log start (``start_offsets``, 0 when unknown).
    """
    starts = start_offsets or {}
    lag: dict[TopicPartition, int] = {}
    for tp, end in end_offsets.items():
        done = committed.get(tp)
        position = done if done is not None else starts.get(tp, 0)
        lag[tp] = max(0, end - position)
    return lag


class ConsumerLagMonitor:
    """Refreshes the lag gauge every ``interval`` seconds with its own admin client and offset consumer."""

    def __init__(self, settings: Settings, *, group: str, topics: Sequence[str], registry: CollectorRegistry) -> None:
        self.settings = settings
        self.group = group
        self.topics = tuple(topics)
        self.gauge = Gauge(
            "cld_consumer_lag",
            "Records not yet committed by the consumer group, per partition.",
            ["group", "topic", "partition"],
            registry=registry,
        )
        self._task: asyncio.Task[None] | None = None
        self._nudged = asyncio.Event()
        self.refreshes = 0
        """Completed refreshes (for tests and debugging)."""

    def nudge(self) -> None:
        """Ask for a refresh soon (a batch was just processed); cheap, callable for every message."""
        self._nudged.set()

    def watch(self, broker: Any) -> None:
        """Add a broker middleware that nudges the monitor after each consumed message or batch."""
        monitor = self

        class LagNudge(BaseMiddleware[Any, Any]):
            async def after_processed(
                self, exc_type: Any = None, exc_val: Any = None, exc_tb: Any = None
            ) -> bool | None:
                monitor.nudge()
                return False

        broker.add_middleware(LagNudge)

    def retry_delay(self, failures: int) -> float:
        """Seconds before retrying a failed refresh: 0.5, 1, 2, ... capped at the interval (a transient error,
        such as a group coordinator not elected yet, must not freeze the gauge for a whole interval)."""
        return float(min(self.settings.consumer_lag_interval_seconds, RETRY_FIRST_SECONDS * 2 ** (failures - 1)))

    async def _wait(self) -> None:
        """Until the next refresh: the interval, or a nudge plus the delay that lets the batch's commit land."""
        try:
            await asyncio.wait_for(self._nudged.wait(), timeout=self.settings.consumer_lag_interval_seconds)
        except TimeoutError:
            return
        await asyncio.sleep(REFRESH_DELAY_SECONDS)  # rate limit and commit latency, not a synchronisation
        self._nudged.clear()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lag-{self.group}")

    async def stop(self) -> None:
        """Cancel the refresh loop. Never raises: the lag gauge must not fail a service's shutdown."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # clients could not start (broker unreachable): try again later
                log.warning("consumer lag monitor could not connect", extra={"error": type(exc).__name__})
            await asyncio.sleep(self.settings.consumer_lag_interval_seconds)

    async def _session(self) -> None:
        """One pair of clients, refreshing until cancelled (or until they fail to start)."""
        kwargs: dict[str, Any] = self.settings.aiokafka_kwargs()
        client_id = f"cld-{self.settings.service_name}-lag"
        admin = AIOKafkaAdminClient(**kwargs, client_id=client_id)
        consumer = AIOKafkaConsumer(**kwargs, enable_auto_commit=False, client_id=client_id)
        try:
            await admin.start()
            await consumer.start()
            failures = 0
            while True:
                try:
                    await self.refresh(admin, consumer)
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a slow broker must not kill the service: try again soon
                    failures += 1
                    # once per streak (a broker outage must not flood the log), then retried with backoff
                    (log.warning if failures == 1 else log.debug)(
                        "consumer lag refresh failed", extra={"error": type(exc).__name__, "failures": failures}
                    )
                    await asyncio.sleep(self.retry_delay(failures))
                    continue
                await self._wait()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await admin.close()

    async def refresh(self, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer) -> None:
        partitions = [
            TopicPartition(t["topic"], p["partition"])
            for t in await admin.describe_topics(list(self.topics))
            if t.get("error_code", 0) == 0
            for p in t.get("partitions", ())
        ]
        if not partitions:
            return
        end = await consumer.end_offsets(partitions)
        offsets = await admin.list_consumer_group_offsets(self.group, partitions=partitions)
        committed = {tp: (om.offset if om is not None and om.offset >= 0 else None) for tp, om in offsets.items()}
        uncommitted = [tp for tp in partitions if committed.get(tp) is None]
        starts = await consumer.beginning_offsets(uncommitted) if uncommitted else {}
        for tp, lag in compute_lag(end, {tp: committed.get(tp) for tp in partitions}, starts).items():
            self.gauge.labels(self.group, tp.topic, str(tp.partition)).set(lag)
        self.refreshes += 1
