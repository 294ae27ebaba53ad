"""Floors run beside each benchmark in the same run: the machines are shared and noisy, so speed is reported as a
ratio to the cheapest thing that does the same reading or moving (DEVELOPERS.md: "measure speed as a ratio").

- ``csv_floor``: a plain ``csv.reader`` loop over the same file (the cost of merely reading it in Python).
- ``kafka_hop_floor``: one plain aiokafka producer -> topic -> consumer hop of the same messages on the same broker.
"""

from __future__ import annotations

import asyncio
import csv
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


def csv_floor(path: Path, *, repeats: int = 2) -> tuple[int, float]:
    """(rows, best seconds) of a plain ``csv.reader`` loop over ``path`` touching every cell's row."""
    best = float("inf")
    rows = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = -1
            for _row in csv.reader(fh):
                rows += 1
        best = min(best, time.perf_counter() - t0)
    return rows, best


async def kafka_hop_floor(
    bootstrap: str, values: Sequence[tuple[bytes, bytes]], *, partitions: int = 6, wait_seconds: float = 300
) -> float:
    """Records/s of one plain hop: publish every (key, value) with acks=all and read them back in one consumer
    group from a fresh topic of ``partitions`` partitions (deleted afterwards)."""
    topic = f"bench-floor-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-g",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10, max_batch_size=512 * 1024)
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():  # bounded by the timeout below: wait for the group to assign partitions
            await asyncio.wait_for(consumer.getmany(timeout_ms=100), timeout=30)
        n = len(values)
        t0 = time.monotonic()

        async def read() -> float:
            seen = 0
            async with asyncio.timeout(wait_seconds):
                while seen < n:
                    batch = await consumer.getmany(timeout_ms=100, max_records=5000)
                    seen += sum(len(r) for r in batch.values())
            return time.monotonic()

        reader = asyncio.create_task(read())
        futs = [await producer.send(topic, value, key=key) for key, value in values]
        await asyncio.gather(*futs)
        t_end = await reader
        return n / (t_end - t0)
    finally:
        await producer.stop()
        await consumer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
