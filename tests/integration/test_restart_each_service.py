"""SIGKILL each service mid-stream on a real Kafka broker, restart it, and lose nothing, duplicate nothing.

For each of validation, pseudonymisation and submission: all four services run as real processes (``cld serve``)
with tenancy enforced; a first part of the synthetic records goes straight to the raw topic from a registered
source; as soon as that service has passed some of them (its output topic, or for submission its state, has
records: an observable event, no fixed sleep) it is SIGKILLed (no graceful shutdown, no final commit); the rest
of the records are published while it is down, then it is started again. Every event id must come out validated
and pseudonymised (at least once: duplicates on the topics are allowed), and once every consumer group has
committed to the end of its topic the submission state must hold exactly one record per record sent, per LA.

For ingest: a CSV upload answered 202, ingest SIGKILLed right after the answer, restarted, a second upload
answered 202: every row of both uploads reaches the submission state, exactly once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from cld_governance.tenancy import Operator, OperatorRole, Registry, generate_api_key, hash_api_key
from cld_schemas import topics
from tests.component.test_ingest_service import csv_text
from tests.support.processes import ServiceProcess, collect, event_ids, produce, service_env
from tests.support.records import service_record
from tests.support.tenancy import Tenancy, make_tenancy
from tests.support.waits import wait_until as _wait_until

pytestmark = pytest.mark.integration

SERVICES = ("ingest", "validation", "pseudonymisation", "submission")
LAS = ("318", "319", "102")
SOURCE = "regional-hub"
"""A registered source allowed for all three LAs (``tests.support.tenancy``)."""
OPERATOR = "Restart Test Operator"
PERIOD = {"period_start": "2025-04-01", "period_end": "2026-03-31"}
"""The reporting period of ``service_record`` (open services starting 2025-05-01: all in scope)."""
FIRST_PART, SECOND_PART = 2400, 600
"""Records published before the kill, and while the killed service is down."""
WAIT = 120.0
"""Upper bound of every wait (a bound, not a delay: each wait ends as soon as its condition holds)."""
GROUPS = {
    # consumer group -> the topic it reads (topic names without the test's prefix)
    "cld-validation": topics.RAW,
    "cld-pseudonymisation": topics.VALIDATED,
    "cld-submission": topics.VALIDATED,
    "cld-submission-pseudonymised": topics.PSEUDONYMISED,
}


wait_until = partial(_wait_until, seconds=WAIT)


@dataclass
class Cluster:
    """The four services as processes on one topic prefix, a tenants registry with a source and an operator."""

    bootstrap: str
    prefix: str
    log_dir: Path

    def __post_init__(self) -> None:
        base = make_tenancy()
        operator_key = generate_api_key()
        registry = Registry(
            tenants=base.registry.tenants,
            sources=base.registry.sources,
            operators=(
                Operator(
                    name=OPERATOR,
                    role=OperatorRole.HUB_OPERATOR,
                    la_codes=LAS,
                    hub_id="north",
                    key_hash=hash_api_key(operator_key),
                ),
            ),
        )
        self.tenancy = Tenancy(registry, {**base.keys, OPERATOR: operator_key})
        tenants_file, _keys = self.tenancy.write(self.log_dir)
        self.state_dir = self.log_dir / "submission-state"
        self.env = service_env(
            self.bootstrap, self.prefix, tenants_file=tenants_file, CLD_SUBMISSION_STATE_DIR=str(self.state_dir)
        )
        self.services: dict[str, ServiceProcess] = {}

    def topic(self, name: str) -> str:
        return self.prefix + name

    def start(self, *names: str) -> None:
        procs = [ServiceProcess(n, self.env, self.log_dir).start() for n in names]
        for p in procs:
            self.services[p.name] = p
        for p in procs:
            p.wait_healthy()

    def kill(self, name: str) -> None:
        self.services[name].kill()

    def stop(self) -> None:
        for p in self.services.values():
            p.stop()

    # -- observations ---------------------------------------------------------------------------------

    async def end_offsets(self, name: str) -> dict[TopicPartition, int]:
        """Per partition of the (prefixed) topic, the offset after its last record (empty: no topic yet)."""
        topic = self.topic(name)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None)
        await admin.start()
        await consumer.start()
        try:
            parts = [
                TopicPartition(topic, p["partition"])
                for t in await admin.describe_topics([topic])
                if t.get("error_code", 0) == 0
                for p in t.get("partitions", ())
            ]
            return dict(await consumer.end_offsets(parts)) if parts else {}
        finally:
            await consumer.stop()
            await admin.close()

    async def records_on(self, name: str) -> int:
        return sum((await self.end_offsets(name)).values())

    async def drained(self) -> bool:
        """Every consumer group has committed up to the end of the topic it reads."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            for group, name in GROUPS.items():
                ends = await self.end_offsets(name)
                if not ends:
                    return False
                offsets = await admin.list_consumer_group_offsets(group, partitions=list(ends))
                for tp, end in ends.items():
                    om = offsets.get(tp)
                    committed = om.offset if om is not None and om.offset >= 0 else 0
                    if committed < end:
                        return False
            return True
        finally:
            await admin.close()

    async def in_scope(self, la: str) -> int:
        """The submission state's in-scope count for the LA, through its API (``GET /v1/state/{la}``)."""
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(
                f"{self.services['submission'].url}/v1/state/{la}", params=PERIOD, headers=self.tenancy.auth(OPERATOR)
            )
        r.raise_for_status()
        return int(r.json()["in_scope"])

    async def held(self) -> dict[str, int]:
        return {la: await self.in_scope(la) for la in LAS}

    def stored_rows(self) -> tuple[int, int]:
        """(record rows, applied events) in the submission's SQLite store, read directly."""
        with closing(sqlite3.connect(self.state_dir / "records.sqlite3", timeout=30)) as conn:
            (records,) = conn.execute("SELECT count(*) FROM records").fetchone()
            (events,) = conn.execute("SELECT count(*) FROM seen_events").fetchone()
        return int(records), int(events)


@pytest.fixture
def cluster(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(kafka_bootstrap, topic_prefix, tmp_path)
    try:
        yield c
    finally:
        c.stop()


def raw_records(first: int, count: int) -> list[tuple[bytes | None, bytes, dict[str, str]]]:
    """Distinct records (own event reference and event id), spread over three LAs (so several partitions)."""
    return [
        (
            LAS[i % len(LAS)].encode(),
            json.dumps(
                service_record(la_code=None, event_reference=f"E{i:05d}", la_person_unique_identifier=f"P{i:05d}")
            ).encode(),
            {"cld-source": SOURCE, "cld-event-id": f"restart-{i}"},
        )
        for i in range(first, first + count)
    ]


def expected_per_la(total: int) -> dict[str, int]:
    return {la: sum(1 for i in range(total) if LAS[i % len(LAS)] == la) for la in LAS}


async def progress_of(cluster: Cluster, victim: str) -> int:
    """How many records have passed the service: its output topic, or for submission its state."""
    if victim == "validation":
        return await cluster.records_on(topics.VALIDATED)
    if victim == "pseudonymisation":
        return await cluster.records_on(topics.PSEUDONYMISED)
    return sum((await cluster.held()).values())


async def assert_everything_arrived_once(cluster: Cluster, total: int, wanted: set[str] | None) -> dict[str, Any]:
    """Every id validated and pseudonymised (at least once); once every group is drained, exactly ``total``
    records in the submission state (per LA as expected), each applied once."""
    count = (lambda s: len(event_ids(s)) >= total) if wanted is None else (lambda s: event_ids(s) >= wanted)
    validated = await collect(cluster.bootstrap, cluster.topic(topics.VALIDATED), until=count, wait_seconds=WAIT)
    pseudo = await collect(cluster.bootstrap, cluster.topic(topics.PSEUDONYMISED), until=count, wait_seconds=WAIT)
    if wanted is not None:
        assert event_ids(validated) == wanted
        assert event_ids(pseudo) == wanted
    else:
        assert len(event_ids(validated)) == total
        assert event_ids(pseudo) == event_ids(validated)

    await wait_until(cluster.drained, what="every consumer group committed to the end of its topic")
    held = await cluster.held()
    assert sum(held.values()) == total
    if wanted is not None:
        assert held == expected_per_la(total)
    assert cluster.stored_rows() == (total, total)  # one row per record, each event applied once
    return {"validated_messages": len(validated), "pseudonymised_messages": len(pseudo), "held": held}


@pytest.mark.parametrize("victim", ["validation", "pseudonymisation", "submission"])
async def test_a_service_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(
    cluster: Cluster, victim: str
) -> None:
    total = FIRST_PART + SECOND_PART
    cluster.start(*SERVICES)
    await produce(cluster.bootstrap, cluster.topic(topics.RAW), raw_records(0, FIRST_PART))

    await wait_until(lambda: progress_of(cluster, victim), what=f"first records through {victim}")
    cluster.kill(victim)
    passed_at_kill = await progress_of(cluster, victim) if victim != "submission" else cluster.stored_rows()[0]
    # The rest arrives while it is down: the kill lands with records still to pass it, whatever its speed.
    await produce(cluster.bootstrap, cluster.topic(topics.RAW), raw_records(FIRST_PART, SECOND_PART))
    cluster.start(victim)

    outcome = await assert_everything_arrived_once(cluster, total, {f"restart-{i}" for i in range(total)})
    assert 0 < passed_at_kill < total
    print(f"{victim}: {passed_at_kill} of {total} records had passed it at the kill; {outcome}")


async def test_ingest_killed_between_two_uploads_loses_no_accepted_record(cluster: Cluster) -> None:
    half = 1500
    cluster.start(*SERVICES)
    rows = [
        service_record(event_reference=f"U{i:05d}", la_person_unique_identifier=f"P{i:05d}") for i in range(2 * half)
    ]

    async def upload(part: list[dict[str, Any]]) -> None:
        async with httpx.AsyncClient(base_url=cluster.services["ingest"].url, timeout=60) as client:
            r = await client.post(
                "/v1/uploads",
                params={"la": "318"},
                content=csv_text(part).encode(),
                headers={"content-type": "text/csv", **cluster.tenancy.auth("case-system")},
            )
        assert r.status_code == 202, r.text
        assert r.json()["rows"] == len(part)

    await upload(rows[:half])
    cluster.kill("ingest")  # right after the 202: what was accepted must already be durable
    cluster.start("ingest")
    await upload(rows[half:])

    outcome = await assert_everything_arrived_once(cluster, 2 * half, None)
    assert outcome["held"] == {"318": 2 * half, "319": 0, "102": 0}
