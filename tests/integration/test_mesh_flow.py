"""The mesh on a real Kafka broker with real processes (``cld serve``): ingest, validation, pseudonymisation,
with tenancy enforced (a registry file and source keys, as ``deploy/local/up.sh`` provisions them)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cld_schemas import topics
from tests.component.test_ingest_service import csv_text
from tests.support.processes import ServiceProcess, collect, event_ids, produce, service_env
from tests.support.records import service_record
from tests.support.tenancy import Tenancy, make_tenancy

pytestmark = pytest.mark.integration


class Mesh:
    def __init__(self, bootstrap: str, prefix: str, log_dir: Path) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.tenancy: Tenancy = make_tenancy()
        tenants_file, _keys = self.tenancy.write(log_dir)
        self.env = service_env(bootstrap, prefix, tenants_file=tenants_file)
        self.log_dir = log_dir
        self.services: dict[str, ServiceProcess] = {}

    def topic(self, name: str) -> str:
        return self.prefix + name

    def start(self, *names: str) -> None:
        procs = [ServiceProcess(n, self.env, self.log_dir).start() for n in names]
        for p in procs:
            self.services[p.name] = p
        for p in procs:
            p.wait_healthy()

    def restart(self, name: str) -> ServiceProcess:
        p = ServiceProcess(name, self.env, self.log_dir).start()
        self.services[name] = p
        p.wait_healthy()
        return p

    def stop(self) -> None:
        for p in self.services.values():
            p.stop()


@pytest.fixture
def mesh(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(kafka_bootstrap, topic_prefix, tmp_path)
    try:
        yield m
    finally:
        m.stop()


async def test_csv_upload_flows_from_ingest_to_validated_and_pseudonymised(mesh: Mesh) -> None:
    mesh.start("ingest", "validation", "pseudonymisation")
    rows = [service_record(event_reference=f"EV{i}", la_person_unique_identifier=f"P{i}") for i in range(50)]
    rows[3]["nhs_number"] = "1234"  # an invalid value: reported, not dropped
    async with httpx.AsyncClient(
        base_url=mesh.services["ingest"].url, timeout=30, headers=mesh.tenancy.auth("case-system")
    ) as client:
        r = await client.post(
            "/v1/uploads", params={"la": "318"}, content=csv_text(rows).encode(), headers={"content-type": "text/csv"}
        )
        single = await client.post("/v1/records", json=service_record(), headers={"Idempotency-Key": "one"})
    assert r.status_code == 202, r.text
    assert single.status_code == 202
    assert r.json()["rows"] == 50

    validated = await collect(mesh.bootstrap, mesh.topic(topics.VALIDATED), until=lambda s: len(event_ids(s)) >= 51)
    pseudo = await collect(mesh.bootstrap, mesh.topic(topics.PSEUDONYMISED), until=lambda s: len(event_ids(s)) >= 51)

    assert event_ids(validated) == event_ids(pseudo)
    assert "one" in event_ids(validated)
    assert sum(1 for v in validated if any(f["rule"] == "CLD020" for f in v["findings"])) >= 1
    assert all("nhs_number" not in p["record"] for p in pseudo)
    assert "1234" not in json.dumps(pseudo)


async def test_a_record_published_with_kcat_comes_out_validated_and_pseudonymised(mesh: Mesh) -> None:
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.skip("kcat is not installed (apt-get install -y kcat)")
    mesh.start("validation", "pseudonymisation")
    value = json.dumps(service_record(la_code=None))
    subprocess.run(  # noqa: ASYNC221 - a short, bounded kcat call; the test has nothing else to do
        [
            kcat,
            "-b",
            mesh.bootstrap,
            "-P",
            "-t",
            mesh.topic(topics.RAW),
            "-k",
            "318",
            "-H",
            "cld-source=kafka-only",
            "-H",
            "cld-event-id=kcat-1",
        ],
        input=value.encode(),
        check=True,
        timeout=30,
    )

    pseudo = await collect(mesh.bootstrap, mesh.topic(topics.PSEUDONYMISED), until=lambda s: bool(s))
    validated = await collect(mesh.bootstrap, mesh.topic(topics.VALIDATED), until=lambda s: bool(s))
    assert validated[0]["provenance"]["source"] == "kafka-only"
    assert validated[0]["la_code"] == "318"
    assert validated[0]["record"]["event_start_date"] == "01/05/2025"
    assert pseudo[0]["provenance"]["event_id"] == "kcat-1"


async def test_a_malformed_message_is_dead_lettered_and_the_records_behind_it_flow(mesh: Mesh) -> None:
    mesh.start("validation", "pseudonymisation")
    raw = mesh.topic(topics.RAW)
    # One key = one partition: the poison message sits in front of the good ones on the same partition.
    src = {"cld-source": "case-system"}
    await produce(mesh.bootstrap, raw, [(b"318", b"\xff not json", src)])
    good = [(b"318", json.dumps(service_record()).encode(), {**src, "cld-event-id": f"after-{i}"}) for i in range(20)]
    await produce(mesh.bootstrap, raw, good)

    letters = await collect(mesh.bootstrap, mesh.topic(topics.DEADLETTER), until=lambda s: bool(s))
    pseudo = await collect(mesh.bootstrap, mesh.topic(topics.PSEUDONYMISED), until=lambda s: len(event_ids(s)) >= 20)
    assert letters[0]["reason"] == "not_utf8"
    assert letters[0]["topic"] == raw
    assert letters[0]["offset"] == 0
    assert event_ids(pseudo) == {f"after-{i}" for i in range(20)}


async def test_killing_validation_mid_stream_loses_no_record(mesh: Mesh) -> None:
    mesh.start("validation", "pseudonymisation")
    total = 6000
    messages = [
        (
            ("318", "319", "102")[i % 3].encode(),
            json.dumps(service_record(la_code=None)).encode(),
            {"cld-source": "regional-hub", "cld-event-id": f"k-{i}"},
        )
        for i in range(total)
    ]
    await produce(mesh.bootstrap, mesh.topic(topics.RAW), messages)
    # Kill as soon as some, but not all, records have come out validated.
    seen = await collect(mesh.bootstrap, mesh.topic(topics.VALIDATED), until=lambda s: len(s) > 0)
    mesh.services["validation"].kill()
    killed_after = len(event_ids(seen))
    mesh.restart("validation")

    wanted = {f"k-{i}" for i in range(total)}
    validated = await collect(
        mesh.bootstrap, mesh.topic(topics.VALIDATED), until=lambda s: event_ids(s) >= wanted, wait_seconds=120
    )
    pseudo = await collect(
        mesh.bootstrap, mesh.topic(topics.PSEUDONYMISED), until=lambda s: event_ids(s) >= wanted, wait_seconds=120
    )
    assert killed_after < total
    assert event_ids(validated) == wanted  # at-least-once: every id at least once (duplicates allowed)
    assert event_ids(pseudo) == wanted
