"""Two submission instances on one PostgreSQL state (issue 12): real Kafka, real PostgreSQL, NHS England's MESH sandbox.

Two ``cld serve submission`` processes (distinct ports, the same consumer group ``cld-submission``, the same
``CLD_SUBMISSION_DATABASE_URL`` and state folder) consume one stream of validated records, which a real validation
process makes from raw records published for three LAs whose keys fall on partitions of both instances:

- one instance is killed with SIGKILL mid-stream and restarted: every record is in the state exactly once (every
  event id seen once, one row per record, each partition's stored next offset at the end of the topic, and both
  instances count the in-scope records of every LA as the scope rules written out in the test do);
- a submission requested on instance A and approved on instance B while it is approved again, concurrently, on A
  reaches the NHS England mailbox exactly once, and both instances report it acknowledged.

Waits are bounded polls on events (``tests.support.waits.wait_until``), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from cld_governance.loaders import save_registry
from cld_governance.tenancy import (
    Operator,
    OperatorRole,
    Registry,
    Source,
    SourceKind,
    Tenant,
    generate_api_key,
    hash_api_key,
)
from cld_schemas import topics
from cld_submission.domain.identity import ProcessKeyHasher, identify
from cld_synth.generator import generate_rows
from tests.integration import mesh_fixtures, pg_fixtures
from tests.integration.test_submission_mesh import RECEIVER, Nhse, expected_in_scope
from tests.support.processes import ServiceProcess, collect, produce, service_env
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration

mesh_sandbox = mesh_fixtures.mesh_sandbox
postgres_server = pg_fixtures.postgres_server
fresh_database = pg_fixtures.fresh_database

# The example registry's LAs; their keys fall on partitions 2, 0 and 3 of six, so that under the range and the
# round-robin assignors alike each of two consumers in the group holds at least one of them.
LAS = ("318", "319", "320")
P_START, P_END = date(2024, 4, 1), date(2025, 3, 31)
SOURCE = "case-system"
ADA, GRACE = "Ada Operator", "Grace Approver"
WAIT = 180.0
VALIDATED_METRIC = f'cld_consumed_records_total{{service="submission",topic="{topics.VALIDATED}"}}'


class Keys(dict[str, str]):
    """API keys of the registry the test provisioned (source id or operator name -> key), never in the file."""

    def auth(self, principal: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self[principal]}"}


def provision_registry(directory: Path) -> tuple[Path, Keys]:
    keys = Keys({p: generate_api_key() for p in (SOURCE, ADA, GRACE)})
    registry = Registry(
        tenants=tuple(Tenant(la_code=la, name=f"Example Council {la}", hub_id="north") for la in LAS),
        sources=(Source(id=SOURCE, kind=SourceKind.LA_SYSTEM, la_codes=LAS, key_hash=hash_api_key(keys[SOURCE])),),
        operators=(
            Operator(
                name=ADA, role=OperatorRole.HUB_OPERATOR, la_codes=LAS, hub_id="north", key_hash=hash_api_key(keys[ADA])
            ),
            Operator(name=GRACE, role=OperatorRole.LA_OPERATOR, la_codes=LAS, key_hash=hash_api_key(keys[GRACE])),
        ),
    )
    path = directory / "tenants.json"
    save_registry(registry, path)
    return path, keys


@pytest.fixture
def nhse(mesh_sandbox: str) -> Nhse:
    box = Nhse(mesh_sandbox)
    for mid in box.inbox():  # start from an empty inbox (the sandbox is shared by the session)
        box.read_and_acknowledge(mid)
    return box


@pytest.fixture
def keys_and_env(
    kafka_bootstrap: str, topic_prefix: str, mesh_sandbox: str, fresh_database: str, tmp_path: Path
) -> tuple[Keys, dict[str, str]]:
    registry, keys = provision_registry(tmp_path)
    env = service_env(
        kafka_bootstrap,
        topic_prefix,
        CLD_TENANTS_FILE=str(registry),
        CLD_SUBMISSION_DATABASE_URL=fresh_database,
        CLD_SUBMISSION_STATE_DIR=str(tmp_path / "submission-state"),
        CLD_SUBMISSION_TRANSPORT="mesh",
        CLD_SUBMISSION_ACK_POLL_SECONDS="0.5",
        CLD_MESH_URL=mesh_sandbox,
        CLD_MESH_MAILBOX="X26ABC1",
        CLD_MESH_PASSWORD="password",
        CLD_MESH_SHARED_KEY="Banana",
        CLD_MESH_RECIPIENT_MAILBOX=RECEIVER,
        CLD_MESH_WORKFLOW_ID="TEST_WORKFLOW",
        CLD_MESH_VERIFY_TLS="false",
        CLD_MESH_REQUEST_TIMEOUT="10",
        CLD_MESH_RETRY=json.dumps({"max_attempts": 50, "base_delay": 0.5, "max_delay": 2, "deadline": 120}),
    )
    return keys, env


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    procs: list[ServiceProcess] = []
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


async def started(procs: list[ServiceProcess], env: dict[str, str], log_dir: Path, name: str) -> ServiceProcess:
    process = ServiceProcess(name, env, log_dir).start()
    procs.append(process)
    await asyncio.to_thread(process.wait_healthy, 90.0)
    return process


def la_rows(la: str, *, people: int, seed: int) -> list[dict[str, Any]]:
    return [row for row, _ in generate_rows(people=people, seed=seed, period_end=P_END, la_code=la)]


async def publish_raw(bootstrap: str, prefix: str, rows: list[dict[str, Any]], tag: str) -> list[str]:
    """Raw records as a source system sends them (key: the LA); returns their event ids, in order."""
    ids = [f"{tag}-{i}" for i in range(len(rows))]
    messages = [
        (
            str(row["la_code"]).encode(),
            json.dumps({k: v for k, v in row.items() if v}).encode(),
            {"cld-source": SOURCE, "cld-event-id": event_id},
        )
        for row, event_id in zip(rows, ids, strict=True)
    ]
    await produce(bootstrap, prefix + topics.RAW, messages)
    return ids


async def consumed_validated(client: httpx.AsyncClient, process: ServiceProcess) -> float:
    """Validated records whose offsets this instance committed (its own counter, since it started)."""
    text = (await client.get(f"{process.url}/metrics", timeout=10)).text
    for line in text.splitlines():
        if line.startswith(VALIDATED_METRIC):
            return float(line.split()[-1])
    return 0.0


async def seen_events(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM seen_events")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of every partition of ``topic``."""
    probe = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        partitions = sorted(await probe.partitions_for(topic))  # fetches the topic's metadata
    finally:
        await probe.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        await consumer.stop()
    assert len(ends) == 6, ends
    return {tp.partition: offset for tp, offset in ends.items()}


async def in_scope(client: httpx.AsyncClient, process: ServiceProcess, keys: Keys, la: str) -> int:
    params = {"period_start": P_START.isoformat(), "period_end": P_END.isoformat()}
    r = await client.get(f"{process.url}/v1/state/{la}", params=params, headers=keys.auth(ADA), timeout=30)
    assert r.status_code == 200, r.text
    return int(r.json()["in_scope"])


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


@pytest.mark.timeout(900)
async def test_two_instances_one_killed_mid_stream_hold_every_record_exactly_once(
    keys_and_env: tuple[Keys, dict[str, str]],
    processes: list[ServiceProcess],
    client: httpx.AsyncClient,
    fresh_database: str,
    tmp_path: Path,
) -> None:
    keys, env = keys_and_env
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["CLD_TOPIC_PREFIX"]
    await started(processes, env, tmp_path, "validation")
    a = await started(processes, env, tmp_path, "submission")
    b = await started(processes, env, tmp_path, "submission")
    assert a.port != b.port

    # A first part of the stream, in rounds until both instances of the group have consumed some (an instance
    # that joined after the first rounds were applied gets its partitions only at the rebalance).
    first: dict[str, list[dict[str, Any]]] = {la: [] for la in LAS}
    ids: list[str] = []

    async def both_consumed() -> bool:
        return (await consumed_validated(client, a)) > 0 and (await consumed_validated(client, b)) > 0

    for attempt in range(1, 11):
        for la in LAS:
            rows = la_rows(la, people=10, seed=attempt)
            first[la] += rows
            ids += await publish_raw(bootstrap, prefix, rows, f"first{attempt}-{la}")
        try:
            await wait_until(both_consumed, what="both submission instances consumed", seconds=20)
            break
        except TimeoutError:
            continue
    else:
        pytest.fail("the two submission instances did not share the stream's partitions")

    # The rest of the stream; SIGKILL instance A while it is being applied, then start it again.
    rest = {la: la_rows(la, people=400, seed=100) for la in LAS}
    for la in LAS:
        ids += await publish_raw(bootstrap, prefix, rest[la], f"rest-{la}")
    total = len(ids)
    before = await seen_events(fresh_database)

    async def mid_stream() -> int:
        seen = await seen_events(fresh_database)
        return seen if seen > before else 0

    seen_at_kill = await wait_until(mid_stream, what="the second part being applied", seconds=WAIT, poll=0.05)
    a.kill()
    assert seen_at_kill < total, "the kill did not land mid-stream"
    a = await started(processes, env, tmp_path, "submission")

    async def all_applied() -> bool:
        return await seen_events(fresh_database) >= total

    await wait_until(all_applied, what=f"{total} events in the shared state", seconds=WAIT)

    # What the submission service was handed: every raw event, validated once (the validation process ran on).
    validated = await collect(bootstrap, prefix + topics.VALIDATED, until=lambda s: len(s) >= total)
    assert sorted(e["provenance"]["event_id"] for e in validated) == sorted(ids)

    async with await psycopg.AsyncConnection.connect(fresh_database) as conn:
        seen = await (await conn.execute("SELECT la_code, event_id FROM seen_events")).fetchall()
        records = await (await conn.execute("SELECT la_code, event_id FROM records")).fetchall()
        stored_offsets = await (
            await conn.execute("SELECT topic, kafka_partition, next_offset FROM offsets")
        ).fetchall()
    rows_by_la = {la: first[la] + rest[la] for la in LAS}
    ids_by_la = {la: {i for i in ids if i.split("-")[1] == la} for la in LAS}
    # every event seen exactly once, none lost
    assert Counter(seen) == Counter((la, i) for la in LAS for i in ids_by_la[la])
    # one row per record: as many as the distinct record keys (R-ID, the domain's ``identify``) published, each
    # row from an event of its own LA
    hasher = ProcessKeyHasher()
    # the latest version of each record, in the order published (one LA is one partition: applied in that order)
    latest = {la: {identify(hasher, la, row).record_key: row for row in rows_by_la[la]} for la in LAS}
    assert Counter(la for la, _ in records) == Counter({la: len(latest[la]) for la in LAS})
    assert all(event_id in ids_by_la[la] for la, event_id in records)
    # each partition's next offset, stored with the records it covers, is the end of the topic
    ends = await end_offsets(bootstrap, prefix + topics.VALIDATED)
    stored = {partition: offset for topic, partition, offset in stored_offsets if topic.endswith(topics.VALIDATED)}
    assert stored == {p: end for p, end in ends.items() if end > 0}
    # both instances answer from the same state, as the scope rules written out in the test count it
    for la in LAS:
        expected = len(expected_in_scope(list(latest[la].values())))
        assert await in_scope(client, a, keys, la) == expected
        assert await in_scope(client, b, keys, la) == expected


@pytest.mark.timeout(600)
async def test_requested_on_one_approved_on_both_at_once_reaches_mesh_exactly_once(
    keys_and_env: tuple[Keys, dict[str, str]],
    processes: list[ServiceProcess],
    client: httpx.AsyncClient,
    nhse: Nhse,
    tmp_path: Path,
) -> None:
    keys, env = keys_and_env
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["CLD_TOPIC_PREFIX"]
    await started(processes, env, tmp_path, "validation")
    a = await started(processes, env, tmp_path, "submission")
    b = await started(processes, env, tmp_path, "submission")
    la = LAS[0]
    rows = la_rows(la, people=60, seed=3)
    await publish_raw(bootstrap, prefix, rows, f"sub-{la}")
    expected = len(expected_in_scope(rows))

    async def held() -> bool:
        return await in_scope(client, a, keys, la) >= expected and await in_scope(client, b, keys, la) >= expected

    await wait_until(held, what=f"{expected} in-scope records seen by both instances", seconds=WAIT)

    period = {"la_code": la, "period_start": P_START.isoformat(), "period_end": P_END.isoformat()}
    r = await client.post(f"{a.url}/v1/submissions", json=period, headers=keys.auth(ADA), timeout=120)
    assert r.status_code == 201, r.text
    sid = r.json()["submission"]["submission_id"]
    assert r.json()["submission"]["rows"] == expected

    async def approve(process: ServiceProcess) -> httpx.Response:
        return await client.post(
            f"{process.url}/v1/submissions/{sid}/approve",
            json={"accept_errors": True},
            headers=keys.auth(GRACE),
            timeout=120,
        )

    on_b, on_a = await asyncio.gather(approve(b), approve(a))
    # One approval wins; the other is the same approval again (200) or a conflict (409), never a second send.
    assert {on_b.status_code, on_a.status_code} <= {200, 409}, (on_b.text, on_a.text)
    assert 200 in (on_b.status_code, on_a.status_code), (on_b.text, on_a.text)

    async def delivered() -> list[str]:
        return await asyncio.to_thread(nhse.inbox)

    [message_id] = await wait_until(delivered, what="a message in the NHS England inbox", seconds=WAIT)
    await asyncio.to_thread(nhse.read_and_acknowledge, message_id)

    async def status(process: ServiceProcess) -> dict[str, Any]:
        got = await client.get(f"{process.url}/v1/submissions/{sid}/status", headers=keys.auth(GRACE), timeout=30)
        assert got.status_code == 200, got.text
        return dict(got.json())

    async def both_acknowledged() -> bool:
        return all([(await status(p))["state"] == "acknowledged" for p in (a, b)])

    await wait_until(both_acknowledged, what="both instances report the submission acknowledged", seconds=WAIT)
    assert (await status(a))["message_id"] == (await status(b))["message_id"] == message_id
    assert await asyncio.to_thread(nhse.inbox) == []  # exactly one message was ever delivered
    events = await collect(
        bootstrap,
        prefix + topics.SUBMISSIONS,
        until=lambda s: any(e["submission_id"] == sid and e["state"] == "acknowledged" for e in s),
    )
    states = Counter(e["state"] for e in events if e["submission_id"] == sid)
    assert states["approved"] == 1
    assert states["sent"] == 1
    assert states["acknowledged"] == 1
