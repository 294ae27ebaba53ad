"""Bench: records/s into the submission state with 1 and with 2 submission instances on PostgreSQL (issue 12).

For each instance count K: a fresh database on one PostgreSQL server, a fresh topic prefix, K ``cld serve submission``
processes in one consumer group (open tenancy, file transport). A warm-up record per LA is applied first (and, for
K > 1, every instance has consumed some: all are in the group), then N validated records for twelve LAs (so they
spread over the six partitions) are published as fast as a plain producer can, and the time runs from the first
send to the moment the shared state holds all N events (``seen_events``, polled every 0.1 s). Beside it, in the same
run on the same broker, the floor: one plain aiokafka hop of the same messages (``bench.floors.kafka_hop_floor``).

Figures only, never assertions (docs/TEAM.md). Needs a running Kafka (KAFKA_BOOTSTRAP_SERVERS, e.g. after `make up`);
PostgreSQL is started here (deploy/postgres/postgres.sh, a free port, run dir under .run/bench/) unless
--database-url names a server whose user may create databases.

    .venv/bin/python bench/bench_submission_scale.py [--records 30000] [--instances 1 2] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.floors import kafka_hop_floor
from tests.support.processes import ServiceProcess, free_port, service_env
from tests.support.waits import wait_until

REPO = Path(__file__).resolve().parents[1]
VALIDATED = "cld.records.validated.v1"
PSEUDONYMISED = "cld.records.pseudonymised.v1"
LAS = [f"{300 + i}" for i in range(12)]  # several keys: records spread over the partitions
PERIOD_END = date(2025, 3, 31)
METRIC = f'cld_consumed_records_total{{service="submission",topic="{VALIDATED}"}}'


@contextmanager
def postgres(url: str | None) -> Iterator[str]:
    """The server's URL: ``url``, or a server started here on a free port (stopped and removed after)."""
    if url:
        yield url
        return
    port = free_port()
    run_dir = REPO / ".run" / "bench" / f"postgres-{port}"
    env = {**os.environ, "POSTGRES_PORT": str(port), "POSTGRES_RUN_DIR": str(run_dir)}
    script = str(REPO / "deploy" / "postgres" / "postgres.sh")
    started = subprocess.run(["bash", script, "start"], env=env, capture_output=True, text=True, check=False)
    try:
        if started.returncode != 0:
            raise SystemExit(f"postgres.sh start failed:\n{started.stderr[-2000:]}")
        yield started.stdout.strip().splitlines()[-1].partition("=")[2]
    finally:
        subprocess.run(["bash", script, "clean"], env=env, capture_output=True, check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


def fresh_database(server: str, name: str) -> str:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def validated_messages(n: int, run: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of ``n`` validated records: synthetic rows with varied ids, one LA per key."""
    from cld_schemas.events import Provenance, RecordValidated
    from cld_schemas.spec import Release
    from cld_synth.generator import generate_rows

    templates = [row for row, _ in generate_rows(people=300, seed=5, period_end=PERIOD_END)]
    now = datetime(2025, 4, 10, tzinfo=UTC)
    out = []
    for i in range(n):
        la = LAS[i % len(LAS)]
        row = dict(templates[i % len(templates)])
        row.update(la_code=la, la_person_unique_identifier=f"BP{i // 2:08d}", event_reference=f"B{run}{i:09d}")
        event = RecordValidated.model_construct(
            la_code=la,
            release=Release.R2,
            provenance=Provenance.model_construct(
                source="bench", event_id=f"{run}-{i}", received_at=now + timedelta(microseconds=i)
            ),
            record=row,
            findings=[],
            failed=False,
            withdrawn=False,
            validated_at=now,
        )
        out.append((la.encode(), event.model_dump_json().encode()))
    return out


async def seen(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        row = await (await conn.execute("SELECT count(*) FROM seen_events")).fetchone()
    return int(row[0]) if row else 0


async def consumed(client: httpx.AsyncClient, process: ServiceProcess) -> float:
    for line in (await client.get(f"{process.url}/metrics", timeout=10)).text.splitlines():
        if line.startswith(METRIC):
            return float(line.split()[-1])
    return 0.0


async def publish(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def create_topics(bootstrap: str, names: list[str]) -> None:
    """The consumed topics with six partitions, as deployments create them (kafka-init, Strimzi), before any
    instance subscribes: a topic auto-created by a subscription would have the broker's default partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=6, replication_factor=1) for name in names])
    finally:
        await admin.close()


async def one_run(bootstrap: str, server: str, instances: int, n: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    name = f"bench_scale_{instances}_{run}"
    url = fresh_database(server, name)
    prefix = f"bench-scale-{run}."
    work = REPO / ".run" / "bench" / f"scale-{run}"
    work.mkdir(parents=True, exist_ok=True)
    env = service_env(
        bootstrap,
        prefix,
        CLD_SUBMISSION_DATABASE_URL=url,
        CLD_SUBMISSION_STATE_DIR=str(work / "state"),
        CLD_SUBMISSION_TRANSPORT="file",
        CLD_LOG_LEVEL="WARNING",
    )
    await create_topics(bootstrap, [prefix + VALIDATED, prefix + PSEUDONYMISED])
    procs = [ServiceProcess("submission", env, work).start() for _ in range(instances)]
    try:
        for p in procs:
            await asyncio.to_thread(p.wait_healthy, 120.0)
        topic = prefix + VALIDATED
        # Warm-up in rounds until every instance has consumed some (one that joined the group after the first
        # rounds were applied gets partitions only at the rebalance), then until the state holds every round.
        warm = 0
        async with httpx.AsyncClient() as client:

            async def in_group() -> bool:
                return all([await consumed(client, p) > 0 for p in procs])

            for attempt in range(30):
                await publish(bootstrap, topic, validated_messages(len(LAS), f"w{attempt}{run}"))
                warm += len(LAS)
                try:
                    await wait_until(in_group, what="every instance consumed", seconds=10)
                    break
                except TimeoutError:
                    continue
            else:
                raise SystemExit(f"not every one of {instances} instances consumed records")

        async def warmed() -> bool:
            return await seen(url) >= warm

        await wait_until(warmed, what="warm-up applied", seconds=300)
        messages = validated_messages(n, run)
        t0 = time.monotonic()
        await publish(bootstrap, topic, messages)
        t_published = time.monotonic()

        async def all_in() -> bool:
            return await seen(url) >= warm + n

        await wait_until(all_in, what=f"{n} records in the state", seconds=1200, poll=0.1)
        t_end = time.monotonic()
    finally:
        for p in procs:
            p.stop()
        drop_database(server, name)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "instances": instances,
        "records": n,
        "publish_seconds": round(t_published - t0, 2),
        "seconds": round(t_end - t0, 2),
        "records_per_second": round(n / (t_end - t0)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=30_000)
    ap.add_argument("--instances", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--database-url", help="a PostgreSQL server whose user may CREATE DATABASE (default: start one)")
    args = ap.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    print(f"broker {bootstrap}, cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    with postgres(args.database_url) as server:
        results = [asyncio.run(one_run(bootstrap, server, k, args.records)) for k in args.instances]
    hop = asyncio.run(kafka_hop_floor(bootstrap, validated_messages(args.records, "floor")))
    for result in results:
        result["floor_records_per_second"] = round(hop)
        result["ratio_to_floor"] = round(result["records_per_second"] / hop, 3)
        print(json.dumps(result))
    if len(results) > 1:
        base = results[0]["records_per_second"]
        print(json.dumps({"speedup": {r["instances"]: round(r["records_per_second"] / base, 2) for r in results}}))


if __name__ == "__main__":
    main()
