"""Accounting as an invariant on a real broker (issue 10): nothing handed over is lost without a trace.

Real processes (``cld serve``) of validation, pseudonymisation and submission on one topic prefix. A seeded mix
of valid records and hostile messages goes to the raw topic: random bytes in key, value and headers, header
values that are not UTF-8, duplicated ``cld-*`` headers, empty, oversized and tombstone values, JSON that is not
a record. Then, end to end:

- every valid record is on ``cld.records.validated.v1`` and ``cld.records.pseudonymised.v1`` exactly once and in
  the submission state (records and pseudonymised forms) exactly once;
- every hostile message is on the dead-letter topic exactly once (by its topic/partition/offset), with the
  reason its kind calls for, from the validation service; downstream services dead-letter nothing;
- each service's ``cld_consumed_records_total`` equals the sum of its ``cld_consumer_outcomes_total`` and both
  equal the counts seen on the topics.

The seed is printed (``-s``) and is in every assertion message; ``CLD_FUZZ_SEED=<n>`` replays a run.
The first test is finding 1 of the issue exactly: 40 valid records, one with ``cld-source: b"\\xff\\xfe"``,
40 more, all key 318.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from cld_schemas import topics
from tests.component.test_pseudonymisation_service import validated
from tests.support.processes import ServiceProcess, service_env
from tests.support.records import service_record
from tests.support.waits import wait_until as _wait_until

pytestmark = pytest.mark.integration

WAIT = 150.0
"""Upper bound of every wait (each ends as soon as its condition holds)."""
LAS = ("318", "319", "102")
MESSAGES = 5000
HOSTILE_SHARE = 0.25
MAX_BYTES = 256 * 1024
"""The validation service's default ``max_message_bytes``."""
GROUPS = {
    "cld-validation": topics.RAW,
    "cld-pseudonymisation": topics.VALIDATED,
    "cld-submission": topics.VALIDATED,
    "cld-submission-pseudonymised": topics.PSEUDONYMISED,
}

Headers = list[tuple[str, bytes]]


wait_until = partial(_wait_until, seconds=WAIT)


@dataclass
class Sent:
    kind: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    event_id: str | None = None
    """Valid records only: the event id they must come out with."""
    reasons: frozenset[str] = frozenset()
    """Hostile messages only: the dead-letter reasons their kind allows."""
    partition: int = -1
    offset: int = -1


# -- the generator --------------------------------------------------------------------------------------------


def _not_utf8(rng: random.Random) -> bytes:
    """Random bytes that are certainly not UTF-8 (a lone continuation or an invalid start byte among them)."""
    body = rng.randbytes(rng.randint(0, 12))
    bad = rng.choice([b"\xff", b"\xfe", b"\x80", b"\xc3\x28", b"\xed\xa0\x80"])
    at = rng.randint(0, len(body))
    candidate = body[:at] + bad + body[at:]
    try:
        candidate.decode("utf-8")
    except UnicodeDecodeError:
        return candidate
    # A random byte before a lone continuation byte can make a valid sequence (b"\xc7" + b"\x80" is U+01C0):
    # then 0xFF, which never occurs in UTF-8, makes sure.
    return candidate + b"\xff"


def _header_name(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz-_.0123456789ÄéЖ"
    return "x-" + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))


def valid(i: int, rng: random.Random) -> Sent:
    la = LAS[i % len(LAS)]
    event_id = f"fuzz-{i}"
    record = service_record(
        la_code=rng.choice([None, la]), event_reference=f"F{i:05d}", la_person_unique_identifier=f"Q{i:05d}"
    )
    headers: Headers = [("cld-source", b"fuzz-source"), ("cld-event-id", event_id.encode())]
    variant = rng.random()
    if variant < 0.1:
        headers.append(("cld-source", b"fuzz-source"))  # the same header twice with the same value: harmless
    elif variant < 0.2:
        headers.append(("cld-received-at", b"2999-01-01"))  # untrusted time: the record is kept
    elif variant < 0.3:
        headers.append((_header_name(rng), "text ✓".encode()))  # an unknown header with a text value
    return Sent("valid", la.encode(), json.dumps(record).encode(), headers, event_id=event_id)


def hostile(i: int, rng: random.Random) -> Sent:
    """One hostile message of a random kind, with the reasons that kind may be dead-lettered for."""
    la = LAS[i % len(LAS)].encode()
    good = json.dumps(service_record(event_reference=f"H{i:05d}", la_code=None)).encode()
    source: Headers = [("cld-source", b"fuzz-source"), ("cld-event-id", f"hostile-{i}".encode())]
    kind = rng.choice(
        [
            "header-not-utf8",
            "unknown-header-not-utf8",
            "every-header-random",
            "duplicated-header",
            "empty",
            "tombstone",
            "oversized",
            "random-value",
            "random-key",
            "json-not-a-record",
            "unknown-field",
        ]
    )
    if kind == "header-not-utf8":
        name = rng.choice(["cld-source", "cld-event-id", "cld-action", "cld-received-at", "cld-opt-out"])
        headers = [*(h for h in source if h[0] != name), (name, _not_utf8(rng))]
        return Sent(kind, la, good, headers, reasons=frozenset({"unreadable_header"}))
    if kind == "unknown-header-not-utf8":
        return Sent(
            kind, la, good, [*source, (_header_name(rng), _not_utf8(rng))], reasons=frozenset({"unreadable_header"})
        )
    if kind == "every-header-random":
        headers = [(_header_name(rng), rng.randbytes(rng.randint(0, 16))) for _ in range(rng.randint(1, 5))]
        headers.append(("cld-source", _not_utf8(rng)))
        rng.shuffle(headers)
        return Sent(
            kind,
            rng.randbytes(rng.randint(0, 8)) or None,
            rng.randbytes(rng.randint(0, 64)),
            headers,
            reasons=frozenset({"unreadable_header"}),
        )
    if kind == "duplicated-header":
        name = rng.choice(["cld-source", "cld-event-id", "cld-action", "cld-received-at"])
        first = {"cld-action": b"upsert"}.get(name, b"one")
        headers = [*source, (name, first), (name.upper() if rng.random() < 0.5 else name, b"withdraw")]
        return Sent(kind, la, good, headers, reasons=frozenset({"ambiguous_header"}))
    if kind == "empty":
        return Sent(kind, la, b"", source, reasons=frozenset({"not_an_object"}))
    if kind == "tombstone":
        return Sent(kind, la, None, source, reasons=frozenset({"not_an_object"}))
    if kind == "oversized":
        big = json.dumps(service_record(event_description="x" * (MAX_BYTES + rng.randint(1, 4096)))).encode()
        return Sent(kind, la, big, source, reasons=frozenset({"too_large"}))
    if kind == "random-value":
        value = rng.randbytes(rng.randint(1, 200))
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            return Sent(kind, la, value, source, reasons=frozenset({"not_utf8"}))
        try:
            json.loads(text)
        except ValueError:
            return Sent(kind, la, value, source, reasons=frozenset({"not_json"}))
        return Sent(kind, la, value, source, reasons=frozenset({"not_an_object", "wrong_type", "unknown_field"}))
    if kind == "random-key":
        key = rng.randbytes(rng.randint(0, 6)) + bytes([rng.randint(0x80, 0xFF)])  # never an ASCII LA code
        return Sent(kind, key, good, source, reasons=frozenset({"missing_la_code"}))
    if kind == "json-not-a-record":
        value = json.dumps(rng.choice([[1, 2], "9990000018", 12, None, True])).encode()
        return Sent(kind, la, value, source, reasons=frozenset({"not_an_object"}))
    value = json.dumps({**service_record(la_code=None), f"zz{rng.randint(0, 10**6)}": "x"}).encode()
    return Sent("unknown-field", la, value, source, reasons=frozenset({"unknown_field"}))


def generate(seed: int, count: int, hostile_share: float) -> list[Sent]:
    rng = random.Random(seed)
    n_hostile = round(count * hostile_share)
    kinds = [True] * n_hostile + [False] * (count - n_hostile)
    rng.shuffle(kinds)
    return [hostile(i, rng) if bad else valid(i, rng) for i, bad in enumerate(kinds)]


# -- the cluster ----------------------------------------------------------------------------------------------


@dataclass
class Cluster:
    bootstrap: str
    prefix: str
    log_dir: Path
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dir = self.log_dir / "submission-state"
        # Open tenancy: any source for any LA (tenancy has its own tests); small batches: many batch boundaries.
        self.env = service_env(
            self.bootstrap,
            self.prefix,
            CLD_SUBMISSION_STATE_DIR=str(self.state_dir),
            CLD_LOG_LEVEL="WARNING",
            CLD_CONSUMER_MAX_RECORDS="200",
        )

    def topic(self, name: str) -> str:
        return self.prefix + name

    def start(self, *names: str) -> None:
        procs = [ServiceProcess(n, self.env, self.log_dir).start() for n in names]
        for p in procs:
            self.services[p.name] = p
        for p in procs:
            p.wait_healthy()

    def stop(self) -> None:
        for p in self.services.values():
            p.stop()

    async def produce(self, messages: list[Sent], *, topic: str = topics.RAW) -> None:
        """Publish with a plain aiokafka producer (bytes headers as they are); note each one's position."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, max_request_size=2 * 1024 * 1024
        )
        await producer.start()
        try:
            futures = [await producer.send(self.topic(topic), m.value, key=m.key, headers=m.headers) for m in messages]
            for m, meta in zip(messages, await asyncio.gather(*futures), strict=True):
                m.partition, m.offset = meta.partition, meta.offset
        finally:
            await producer.stop()

    async def partitions(self, name: str) -> list[TopicPartition]:
        """The partitions of the (prefixed) topic (empty while it does not exist)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            return [
                TopicPartition(self.topic(name), p["partition"])
                for t in await admin.describe_topics([self.topic(name)])
                if t.get("error_code", 0) == 0
                for p in t.get("partitions", ())
            ]
        finally:
            await admin.close()

    async def read_all(self, name: str) -> list[Any]:
        """Every record on the (prefixed) topic, up to its current end."""
        parts = await self.partitions(name)
        # Starting from the beginning by auto_offset_reset, not by a seek after assign(): a seek raced with the
        # fetch the assignment had already started at the end, and the read then waited for records it never got.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            consumer.assign(parts)
            ends = await consumer.end_offsets(parts)
            # Read until the last offset read on each partition is the one before its end (positions alone are
            # not enough: records the fetcher has buffered already count in them).
            next_offset = await consumer.beginning_offsets(parts)
            out: list[Any] = []
            try:
                async with asyncio.timeout(WAIT):
                    while any(next_offset[tp] < end for tp, end in ends.items()):
                        for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                            out.extend(r for r in records if r.offset < ends[tp])
                            if records:
                                next_offset[tp] = max(next_offset[tp], records[-1].offset + 1)
            except TimeoutError:
                behind = {tp.partition: (next_offset[tp], end) for tp, end in ends.items() if next_offset[tp] < end}
                raise TimeoutError(
                    f"reading {name}: partitions (next, end) not reached in {WAIT} s: {behind}"
                ) from None
            return out
        finally:
            await consumer.stop()

    async def drained(self, groups: dict[str, str] = GROUPS) -> bool:
        """Every consumer group (of ``groups``: group -> topic) has committed up to the end of its topic."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None)
        await admin.start()
        await consumer.start()
        try:
            for group, name in groups.items():
                parts = await self.partitions(name)
                if not parts:
                    return False
                ends = await consumer.end_offsets(parts)
                offsets = await admin.list_consumer_group_offsets(group, partitions=parts)
                for tp, end in ends.items():
                    om = offsets.get(tp)
                    if (om.offset if om is not None and om.offset >= 0 else 0) < end:
                        return False
            return True
        finally:
            await consumer.stop()
            await admin.close()

    async def drained_validation(self) -> bool:
        return await self.drained({"cld-validation": topics.RAW})

    def accounting(self, service: str) -> dict[tuple[str, str], float]:
        """(topic, 'consumed' or an outcome) -> value, scraped from the service's /metrics."""
        text = httpx.get(self.services[service].url + "/metrics", timeout=10).text
        out: dict[tuple[str, str], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "cld_consumed_records_total":
                    out[(s.labels["topic"], "consumed")] = s.value
                elif s.name == "cld_consumer_outcomes_total":
                    out[(s.labels["topic"], s.labels["outcome"])] = s.value
        return out

    def stored(self) -> tuple[int, int, int]:
        """(record rows, applied events, pseudonymised rows) in the submission's SQLite store."""
        with closing(sqlite3.connect(self.state_dir / "records.sqlite3", timeout=30)) as conn:
            (records,) = conn.execute("SELECT count(*) FROM records").fetchone()
            (events,) = conn.execute("SELECT count(*) FROM seen_events").fetchone()
            (pseudo,) = conn.execute("SELECT count(*) FROM pseudonymised").fetchone()
        return int(records), int(events), int(pseudo)


@pytest.fixture
def cluster(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(kafka_bootstrap, topic_prefix, tmp_path)
    try:
        yield c
    finally:
        c.stop()


def event_ids(records: list[Any]) -> Counter[str]:
    return Counter(json.loads(r.value)["provenance"]["event_id"] for r in records)


def metric_counts(acc: dict[tuple[str, str], float], topic: str) -> dict[str, int]:
    return {k: int(acc.get((topic, k), 0)) for k in ("consumed", "forwarded", "stored", "deadlettered")}


# -- finding 1, exactly ---------------------------------------------------------------------------------------


async def test_a_header_that_is_not_utf8_loses_nothing_of_its_batch(cluster: Cluster) -> None:
    cluster.start("validation")
    good = [
        Sent(
            "valid",
            b"318",
            json.dumps(service_record(event_reference=f"F{i:05d}", la_person_unique_identifier=f"Q{i:05d}")).encode(),
            [("cld-source", b"fuzz-source"), ("cld-event-id", f"fuzz-{i}".encode())],
            event_id=f"fuzz-{i}",
        )
        for i in range(80)
    ]
    bad = Sent("header-not-utf8", b"318", good[0].value, [("cld-source", b"\xff\xfe")])
    sent = [*good[:40], bad, *good[40:]]
    await cluster.produce(sent)
    assert len({m.partition for m in sent}) == 1  # one key, one partition: one consumer batch around the bad one

    await wait_until(cluster.drained_validation, what="validation committed to the end of the raw topic")
    validated = event_ids(await cluster.read_all(topics.VALIDATED))
    letters = [json.loads(r.value) for r in await cluster.read_all(topics.DEADLETTER)]
    assert validated == Counter(m.event_id for m in good), f"{sum(validated.values())} of 80 valid records validated"
    assert [(d["reason"], d["partition"], d["offset"]) for d in letters] == [
        ("unreadable_header", bad.partition, bad.offset)
    ]
    acc = metric_counts(cluster.accounting("validation"), topics.RAW)
    assert acc == {"consumed": 81, "forwarded": 80, "stored": 0, "deadlettered": 1}


async def test_a_header_that_is_not_utf8_on_the_validated_topic_loses_nothing_downstream(cluster: Cluster) -> None:
    """The same on ``cld.records.validated.v1``: pseudonymisation and both submission consumers (the validated
    one reads the same messages; the pseudonymised one reads what pseudonymisation forwards)."""
    cluster.start("pseudonymisation", "submission")
    good = [
        Sent(
            "valid",
            b"318",
            validated(f"fuzz-{i}", event_reference=f"F{i:05d}", la_person_unique_identifier=f"Q{i:05d}")
            .model_dump_json()
            .encode(),
            [("cld-source", b"fuzz-source"), ("cld-event-id", f"fuzz-{i}".encode())],
            event_id=f"fuzz-{i}",
        )
        for i in range(80)
    ]
    bad = Sent("header-not-utf8", b"318", good[0].value, [("cld-source", b"\xff\xfe")])
    sent = [*good[:40], bad, *good[40:]]
    await cluster.produce(sent, topic=topics.VALIDATED)

    groups = {g: t for g, t in GROUPS.items() if g != "cld-validation"}
    await wait_until(lambda: cluster.drained(groups), what="downstream groups committed to the end of their topics")
    pseudonymised = event_ids(await cluster.read_all(topics.PSEUDONYMISED))
    letters = [json.loads(r.value) for r in await cluster.read_all(topics.DEADLETTER)]
    assert pseudonymised == Counter(m.event_id for m in good)
    assert sorted((d["service"], d["reason"], d["offset"]) for d in letters) == [
        ("pseudonymisation", "unreadable_header", bad.offset),
        ("submission", "unreadable_header", bad.offset),
    ]
    assert cluster.stored() == (80, 80, 80)
    assert metric_counts(cluster.accounting("pseudonymisation"), topics.VALIDATED) == {
        "consumed": 81,
        "forwarded": 80,
        "stored": 0,
        "deadlettered": 1,
    }
    submission = cluster.accounting("submission")
    assert metric_counts(submission, topics.VALIDATED) == {
        "consumed": 81,
        "forwarded": 0,
        "stored": 80,
        "deadlettered": 1,
    }
    assert metric_counts(submission, topics.PSEUDONYMISED) == {
        "consumed": 80,
        "forwarded": 0,
        "stored": 80,
        "deadlettered": 0,
    }


# -- the fuzz test --------------------------------------------------------------------------------------------


async def test_accounting_holds_end_to_end_under_hostile_input(cluster: Cluster) -> None:
    seed = int(os.environ.get("CLD_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    sent = generate(seed, MESSAGES, HOSTILE_SHARE)
    good = [m for m in sent if m.event_id is not None]
    bad = [m for m in sent if m.event_id is None]
    kinds = Counter(m.kind for m in bad)
    print(
        f"\naccounting fuzz: seed={seed} messages={len(sent)} valid={len(good)} hostile={len(bad)} kinds={dict(kinds)}"
    )
    assert len(bad) >= 0.2 * len(sent)

    cluster.start("validation", "pseudonymisation", "submission")
    await cluster.produce(sent)
    await wait_until(cluster.drained, what=f"every consumer group committed to the end of its topic (seed {seed})")

    validated = event_ids(await cluster.read_all(topics.VALIDATED))
    pseudonymised = event_ids(await cluster.read_all(topics.PSEUDONYMISED))
    letters = [json.loads(r.value) for r in await cluster.read_all(topics.DEADLETTER)]
    records, events, pseudo_rows = cluster.stored()
    accounts = {s: cluster.accounting(s) for s in ("validation", "pseudonymisation", "submission")}
    seen = {
        "seed": seed,
        "sent": len(sent),
        "valid": len(good),
        "hostile": len(bad),
        "validated": sum(validated.values()),
        "pseudonymised": sum(pseudonymised.values()),
        "dead_letters": len(letters),
        "state_records": records,
        "state_events": events,
        "state_pseudonymised": pseudo_rows,
        "validation": metric_counts(accounts["validation"], topics.RAW),
        "pseudonymisation": metric_counts(accounts["pseudonymisation"], topics.VALIDATED),
        "submission/validated": metric_counts(accounts["submission"], topics.VALIDATED),
        "submission/pseudonymised": metric_counts(accounts["submission"], topics.PSEUDONYMISED),
    }
    print(f"accounting fuzz: {json.dumps(seen)}")
    why = f"counts seen: {seen}"

    # Every valid record exactly once on each topic and in the state.
    wanted = Counter(m.event_id for m in good)
    assert validated == wanted, why
    assert pseudonymised == wanted, why
    assert (records, events, pseudo_rows) == (len(good), len(good), len(good)), why

    # Every hostile message exactly once on the dead-letter topic, from validation, with its kind's reason.
    by_position = {(m.partition, m.offset): m for m in bad}
    positions = Counter((d["partition"], d["offset"]) for d in letters)
    assert all(d["service"] == "validation" and d["topic"] == cluster.topic(topics.RAW) for d in letters), why
    assert positions == Counter(list(by_position)), why
    wrong = [
        (by_position[(d["partition"], d["offset"])].kind, d["reason"])
        for d in letters
        if d["reason"] not in by_position[(d["partition"], d["offset"])].reasons
    ]
    assert wrong == [], why
    for d in letters:
        m = by_position[(d["partition"], d["offset"])]
        assert d["payload_bytes"] == len(m.value or b""), why
        assert d.get("payload_hmac") is None, why  # no dead-letter key in this deployment: no fingerprint

    # The accounting metrics: consumed == forwarded + stored + deadlettered, equal to what was seen.
    for name in ("validation", "pseudonymisation", "submission/validated", "submission/pseudonymised"):
        c = seen[name]
        assert isinstance(c, dict)
        assert c["consumed"] == c["forwarded"] + c["stored"] + c["deadlettered"], f"{name}: {why}"
    assert seen["validation"] == {
        "consumed": len(sent),
        "forwarded": len(good),
        "stored": 0,
        "deadlettered": len(bad),
    }, why
    assert seen["pseudonymisation"] == {
        "consumed": len(good),
        "forwarded": len(good),
        "stored": 0,
        "deadlettered": 0,
    }, why
    for name in ("submission/validated", "submission/pseudonymised"):
        assert seen[name] == {"consumed": len(good), "forwarded": 0, "stored": len(good), "deadlettered": 0}, why
