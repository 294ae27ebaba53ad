"""Personal data hygiene (issue 6, section 4): after a full run on the real broker with real processes, with
known, distinctive synthetic values in good and in broken input, none of those values appears in any process
log, any /metrics output (label values included), any HTTP error body or any dead letter.

The scanner proves it can fail: the same scan finds the values in the raw topic, where they legitimately are.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from cld_schemas import topics
from tests.component.test_ingest_service import csv_text
from tests.support.processes import ServiceProcess, collect, event_ids, produce, service_env
from tests.support.records import service_record
from tests.support.tenancy import Tenancy, make_tenancy

pytestmark = pytest.mark.integration

# Distinctive synthetic values (NHS numbers from the 999 test range only). Dates in both accepted forms.
FIRST, LAST = "Quillonetta", "Zephyrine-Ashgrove"
NHS = "9994417723"
DOB_ISO, DOB_SPEC = "1937-02-11", "11/02/1937"
POSTCODE = "ZE9 9QX"
FREE_TEXT = "xylophonic marmalade visit"
PERSON_ID = "PQX771903"
KNOWN = (FIRST, LAST, NHS, DOB_ISO, DOB_SPEC, POSTCODE, FREE_TEXT, PERSON_ID)


def person(**overrides: Any) -> dict[str, Any]:
    known = {
        "first_name": FIRST,
        "last_name": LAST,
        "nhs_number": NHS,
        "date_of_birth": DOB_ISO,
        "postcode": POSTCODE,
        "event_description": FREE_TEXT,
        "la_person_unique_identifier": PERSON_ID,
    }
    return service_record(**{**known, **overrides})


def find_personal_data(text: str) -> set[str]:
    """The known values found in ``text`` (case-insensitive; the postcode also without its space)."""
    lowered = text.lower()
    found = {v for v in KNOWN if v.lower() in lowered}
    if POSTCODE.replace(" ", "").lower() in lowered:
        found.add(POSTCODE)
    return found


def scan(named_texts: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    return {name: hits for name, text in named_texts if (hits := find_personal_data(text))}


async def read_all(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """Every record on ``topic`` (key, value, headers), read to the end offsets seen at the start."""
    probe = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        partitions = await probe.partitions_for(topic)  # fetches the topic's metadata
    finally:
        await probe.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    out: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    try:
        parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        assert parts, f"topic {topic} has no partitions"
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in parts])

        async with asyncio.timeout(60):
            while await behind():
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    out.extend((r.key, r.value, list(r.headers)) for r in records)
    finally:
        await consumer.stop()
    return out


class Run:
    def __init__(self, bootstrap: str, prefix: str, log_dir: Path) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.log_dir = log_dir
        self.tenancy: Tenancy = make_tenancy()
        tenants_file, _ = self.tenancy.write(log_dir)
        self.env = service_env(
            bootstrap,
            prefix,
            tenants_file=tenants_file,
            CLD_LOG_LEVEL="DEBUG",  # the most talkative level: if anything leaks, it leaks here
            CLD_SUBMISSION_STATE_DIR=str(log_dir / "submission-state"),
        )
        self.procs: dict[str, ServiceProcess] = {}
        self.error_bodies: list[tuple[str, str]] = []

    def topic(self, name: str) -> str:
        return self.prefix + name

    def start(self, *names: str) -> None:
        for n in names:
            self.procs[n] = ServiceProcess(n, self.env, self.log_dir).start()
        for n in names:
            self.procs[n].wait_healthy()

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()

    def keep_error(self, what: str, r: httpx.Response, status: int) -> None:
        assert r.status_code == status, (what, r.status_code, r.text)
        self.error_bodies.append((f"http {what} ({r.status_code})", r.text))


@pytest.fixture
def run(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Run]:
    r = Run(kafka_bootstrap, topic_prefix, tmp_path)
    try:
        yield r
    finally:
        r.stop()


async def send_http(run: Run) -> int:
    """Good and broken HTTP requests carrying the known values. Returns how many records were accepted."""
    t = run.tenancy
    async with httpx.AsyncClient(base_url=run.procs["ingest"].url, timeout=30) as c:
        ok = await c.post("/v1/records", json=person(), headers={**t.auth("case-system"), "cld-opt-out": "objection"})
        assert ok.status_code == 202, ok.text
        good_csv = csv_text([person(event_reference="EV-CSV-1", event_start_date="01/05/2025")])
        up = await c.post(
            "/v1/uploads",
            params={"la": "318", "note": FIRST},  # a stray query parameter carrying a name
            content=good_csv.encode(),
            headers={**t.auth("case-system"), "content-type": "text/csv"},
        )
        assert up.status_code == 202, up.text

        run.keep_error("unknown key", await c.post("/v1/records", json=person(), headers={"X-API-Key": FIRST}), 401)
        run.keep_error(
            "other LA",
            await c.post("/v1/records/batch", json=[person(), person(la_code="319")], headers=t.auth("case-system")),
            403,
        )
        run.keep_error(
            "wrong type",
            await c.post("/v1/records", json=person(first_name=[FIRST], postcode={"x": POSTCODE}), headers=t.auth()),
            422,
        )
        run.keep_error(
            "value as a field name",
            await c.post("/v1/records", json={**person(), FIRST: LAST, NHS: DOB_ISO}, headers=t.auth()),
            422,
        )
        run.keep_error(
            "malformed json",
            await c.post(
                "/v1/records",
                content=json.dumps(person())[:-3].encode(),
                headers={**t.auth(), "content-type": "application/json"},
            ),
            422,
        )
        run.keep_error(
            "bad header",
            await c.post("/v1/records", json=person(), headers={**t.auth(), "Idempotency-Key": f"{FIRST} {LAST}"}),
            422,
        )
        run.keep_error(
            "la mismatch",
            await c.post("/v1/records", json=person(), headers={**t.auth(), "X-CLD-LA": "319"}),
            422,
        )
        data_as_header = (
            ",".join([FIRST, LAST, NHS, DOB_SPEC, POSTCODE, FREE_TEXT, PERSON_ID] * 2) + "\n" + "a,b,c\n"
        ).encode()
        run.keep_error(
            "csv without headers",
            await c.post(
                "/v1/uploads?la=318", content=data_as_header, headers={**t.auth(), "content-type": "text/csv"}
            ),
            422,
        )
        other_la_row = csv_text([person(), person(la_code="319")])
        run.keep_error(
            "csv row of another LA",
            await c.post(
                "/v1/uploads?la=318", content=other_la_row.encode(), headers={**t.auth(), "content-type": "text/csv"}
            ),
            422,
        )
        run.keep_error(
            "csv not utf8",
            await c.post(
                "/v1/uploads?la=318",
                content=other_la_row.encode("utf-16"),
                headers={**t.auth(), "content-type": "text/csv"},
            ),
            400,
        )
    return 2


async def send_raw(run: Run) -> tuple[int, int]:
    """Good and broken raw-topic messages carrying the known values: (good records, expected dead letters)."""
    body = json.dumps(person(la_code=None)).encode()
    src = {"cld-source": "case-system"}
    good = [(b"318", body, {**src, "cld-event-id": "pii-good-1"})]
    bad = [
        (b"318", body[:-5], src),  # not JSON
        (b"318", body.replace(b"}", b',"' + FIRST.encode() + b'":"x"}'), src),  # a name as a field name
        (b"318", json.dumps(person(first_name=[FIRST])).encode(), src),  # wrong type
        (b"318", b"\xff" + body, src),  # not UTF-8
        (b"318", json.dumps(person(event_description=FREE_TEXT * 20_000)).encode(), src),  # too large
        (b"319", body, src),  # source not allowed for the LA
        (b"318", body, {"cld-source": f"{FIRST}-{LAST}"}),  # a name as the source id: unknown source
        (b"318", body, {}),  # no source
        (PERSON_ID.encode(), body, src),  # an identifier as the key: not an LA code
    ]
    await produce(run.bootstrap, run.topic(topics.RAW), good + bad)
    return len(good), len(bad)


async def test_no_personal_data_in_logs_metrics_errors_or_dead_letters(run: Run) -> None:
    run.start("ingest", "validation", "pseudonymisation")
    try:
        run.start("submission")
    except (RuntimeError, TimeoutError):  # being finished by another engineer; scanned when it runs
        run.procs.pop("submission").stop()

    print(f"services scanned: {sorted(run.procs)}")  # shown with -s: whether submission took part
    http_good = await send_http(run)
    raw_good, raw_bad = await send_raw(run)
    expected_good = http_good + raw_good
    validated = await collect(
        run.bootstrap, run.topic(topics.VALIDATED), until=lambda s: len(event_ids(s)) >= expected_good
    )
    await collect(run.bootstrap, run.topic(topics.PSEUDONYMISED), until=lambda s: len(event_ids(s)) >= expected_good)
    http_dead = await collect(run.bootstrap, run.topic(topics.DEADLETTER), until=lambda s: len(s) >= raw_bad)
    assert {d["reason"] for d in http_dead} >= {"not_json", "unknown_field", "unknown_source", "source_not_allowed"}
    assert any(v["provenance"]["opt_outs"] == ["objection"] for v in validated)

    metrics = []
    async with httpx.AsyncClient(timeout=10) as c:
        for name, p in run.procs.items():
            m = await c.get(p.url + "/metrics")
            assert m.status_code == 200
            assert "cld_" in m.text
            metrics.append((f"/metrics of {name}", m.text))
    run.stop()  # flush and close the logs before reading them

    dead = await read_all(run.bootstrap, run.topic(topics.DEADLETTER))
    assert len(dead) >= raw_bad
    logs = [(f"log {f.name}", f.read_text(encoding="utf-8", errors="replace")) for f in run.log_dir.glob("*.log")]
    assert len(logs) >= 3
    assert all(text.strip() for _, text in logs)  # the processes did log (DEBUG level)
    dead_texts = [
        (f"dead letter {i}", (v or b"").decode() + json.dumps([(k, h.decode()) for k, h in hs]))
        for i, (_, v, hs) in enumerate(dead)
    ]

    leaks = scan([*logs, *metrics, *run.error_bodies, *dead_texts])
    assert leaks == {}, f"personal data found: {leaks}"

    # The scanner can fail: the raw topic holds the values (as it must), and the scan finds every one of them.
    raw_records = await read_all(run.bootstrap, run.topic(topics.RAW))
    raw_text = "\n".join((v or b"").decode("utf-8", errors="replace") for _, v, _ in raw_records)
    assert find_personal_data(raw_text) == set(KNOWN) - {DOB_SPEC}  # the raw topic holds the ISO form
    assert re.search(DOB_SPEC, json.dumps(validated))  # ... and validation normalised it to the spec form
