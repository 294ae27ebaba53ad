"""Mesh benchmark on a real broker with the services running as processes (``make up`` first).

1. Throughput: publish N records to the raw topic as fast as a plain aiokafka producer can, and time until
   all N have come out validated and pseudonymised (records/s end to end, raw -> pseudonymised).
2. Latency: publish at a steady rate (default 500 records/s) and measure publish -> validated per record
   (the validated message's broker timestamp minus the send time), p50/p99.

Figures only, never assertions. Env: KAFKA_BOOTSTRAP_SERVERS (127.0.0.1:9092), CLD_TOPIC_PREFIX ("").
    .venv/bin/python bench/bench_mesh.py [--records 50000] [--rate 500] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.floors import kafka_hop_floor
from tests.support.records import service_record  # the bench shares the tests' synthetic record

RAW = "cld.events.raw.v1"
VALIDATED = "cld.records.validated.v1"
PSEUDONYMISED = "cld.records.pseudonymised.v1"
LAS = [f"{300 + i}" for i in range(12)]  # several keys: records spread over the partitions


async def tail_consumer(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A group-less consumer positioned at the current end of every partition (only new records count)."""
    probe = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        partitions = await probe.partitions_for(topic)  # fetches the topic's metadata
    finally:
        await probe.stop()
    if not partitions:
        raise SystemExit(f"topic {topic} does not exist: are the services running (make up)?")
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await c.start()
    parts = [TopicPartition(topic, p) for p in sorted(partitions)]
    c.assign(parts)
    end = await c.end_offsets(parts)
    for tp in parts:
        c.seek(tp, end[tp])
    return c


async def count_until(c: AIOKafkaConsumer, tag: bytes, n: int, wait_seconds: float) -> float:
    """Read until n records carrying ``tag`` are seen; returns the monotonic time of the last one."""
    seen = 0
    async with asyncio.timeout(wait_seconds):
        while seen < n:
            batch = await c.getmany(timeout_ms=100, max_records=5000)
            for records in batch.values():
                seen += sum(1 for r in records if r.value and tag in r.value)
    return time.monotonic()


async def throughput(bootstrap: str, prefix: str, n: int) -> None:
    run = uuid.uuid4().hex[:8]
    source = f"bench-{run}"
    tag = f'"source":"{source}"'.encode()
    values = {la: json.dumps(service_record(la_code=None)).encode() for la in LAS}
    v_c = await tail_consumer(bootstrap, prefix + VALIDATED)
    p_c = await tail_consumer(bootstrap, prefix + PSEUDONYMISED)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10, max_batch_size=512 * 1024)
    await producer.start()
    t0 = time.monotonic()
    waiters = [asyncio.create_task(count_until(v_c, tag, n, 600)), asyncio.create_task(count_until(p_c, tag, n, 600))]
    futs = []
    for i in range(n):
        la = LAS[i % len(LAS)]
        futs.append(
            await producer.send(
                prefix + RAW,
                values[la],
                key=la.encode(),
                headers=[("cld-source", source.encode()), ("cld-event-id", f"{run}-{i}".encode())],
            )
        )
    await asyncio.gather(*futs)
    t_pub = time.monotonic()
    t_val, t_pse = await asyncio.gather(*waiters)
    await producer.stop()
    await v_c.stop()
    await p_c.stop()
    print(f"throughput: {n} records")
    print(f"  publish (bench producer)       {n / (t_pub - t0):9.0f} records/s ({t_pub - t0:.1f} s)")
    print(f"  raw -> validated               {n / (t_val - t0):9.0f} records/s ({t_val - t0:.1f} s)")
    print(f"  raw -> pseudonymised (end2end) {n / (t_pse - t0):9.0f} records/s ({t_pse - t0:.1f} s)")
    # The floor beside it, on the same broker in the same run: one plain aiokafka hop of the same messages.
    hop = await kafka_hop_floor(bootstrap, [(LAS[i % len(LAS)].encode(), values[LAS[i % len(LAS)]]) for i in range(n)])
    print(f"  floor: one plain aiokafka hop  {hop:9.0f} records/s")
    print(f"  ratio end2end / floor          {(n / (t_pse - t0)) / hop:9.3f} (target >= 0.25, issue 11)")


async def latency(bootstrap: str, prefix: str, rate: float, seconds: float) -> None:
    run = uuid.uuid4().hex[:8]
    source = f"lat-{run}"
    value = json.dumps(service_record(la_code=None)).encode()
    v_c = await tail_consumer(bootstrap, prefix + VALIDATED)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    total = int(rate * seconds)
    sent_ms: dict[str, float] = {}
    lat: list[float] = []

    async def reader() -> None:
        async with asyncio.timeout(seconds + 60):
            while len(lat) < total:
                batch = await v_c.getmany(timeout_ms=100)
                for records in batch.values():
                    for r in records:
                        if r.value and source.encode() in r.value:
                            eid = json.loads(r.value)["provenance"]["event_id"]
                            if eid in sent_ms:
                                lat.append(r.timestamp - sent_ms.pop(eid))

    task = asyncio.create_task(reader())
    start = time.monotonic()
    for i in range(total):
        due = start + i / rate
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)  # pacing the steady publish rate
        la = LAS[i % len(LAS)]
        eid = f"{run}-{i}"
        sent_ms[eid] = time.time() * 1000
        await producer.send(
            prefix + RAW,
            value,
            key=la.encode(),
            headers=[("cld-source", source.encode()), ("cld-event-id", eid.encode())],
        )
    await producer.flush()
    await task
    await producer.stop()
    await v_c.stop()
    q = statistics.quantiles(lat, n=100)
    print(f"latency publish -> validated at {rate:.0f} records/s for {seconds:.0f} s ({len(lat)} records)")
    print(f"  p50 {q[49]:.0f} ms   p99 {q[98]:.0f} ms   max {max(lat):.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    prefix = os.environ.get("CLD_TOPIC_PREFIX", "")
    print(f"broker {bootstrap}, topic prefix {prefix!r}, cpus {os.cpu_count()}")
    asyncio.run(throughput(bootstrap, prefix, args.records))
    asyncio.run(latency(bootstrap, prefix, args.rate, args.seconds))


if __name__ == "__main__":
    main()
