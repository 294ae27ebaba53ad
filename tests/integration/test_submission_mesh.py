"""Submission end to end: real Kafka, real service processes (``cld serve``), NHS England's MESH sandbox.

A generated LA dataset flows in through ingest and validation; a submission is requested and approved; the
NHS England mailbox (X26ABC2 in the sandbox) receives exactly one message whose file has the spec headers in
order and exactly the in-scope records. Also: SIGKILL of the submission process between 'approved' and
'acknowledged' still ends with exactly one delivered message; a MESH outage is ridden out by retries (the
outage lasts a minute, as the issue asks; the retry budget is the CLD_MESH_RETRY setting).

Tenancy is enforced as in a deployment: the ``env`` fixture provisions a tenants registry (``CLD_TENANTS_FILE``)
with LA 318, one source whose key the CSV upload presents, and two operators with keys: the hub operator Ada
requests, the LA operator Grace approves (``Authorization: Bearer`` on every submission API call).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from mesh_client import MeshClient

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
from cld_schemas.spec import load_spec
from cld_synth.generator import generate_rows
from tests.component.test_ingest_service import csv_text
from tests.integration import mesh_fixtures
from tests.integration.mesh_fixtures import MeshSandboxControl
from tests.support.processes import ServiceProcess, collect, service_env

pytestmark = pytest.mark.integration

mesh_sandbox = mesh_fixtures.mesh_sandbox
mesh_sandbox_control = mesh_fixtures.mesh_sandbox_control

LA = "318"
P_START, P_END = date(2024, 4, 1), date(2025, 3, 31)
PERIOD = {"la_code": LA, "period_start": P_START.isoformat(), "period_end": P_END.isoformat()}
RECEIVER = "X26ABC2"
SOURCE = "case-system"
ADA, GRACE = "Ada Operator", "Grace Approver"
KEYS: dict[str, str] = {}
"""Keys of the registry the ``env`` fixture provisioned (source id or operator name -> key)."""


def auth(principal: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[principal]}"}


def provision_registry(directory: Path) -> Path:
    """A registry file for the processes under test; its keys go to ``KEYS`` (never into the file)."""
    KEYS.clear()
    KEYS.update({p: generate_api_key() for p in (SOURCE, ADA, GRACE)})
    registry = Registry(
        tenants=(Tenant(la_code=LA, name="Example Borough Council", hub_id="north"),),
        sources=(Source(id=SOURCE, kind=SourceKind.LA_SYSTEM, la_codes=(LA,), key_hash=hash_api_key(KEYS[SOURCE])),),
        operators=(
            Operator(
                name=ADA,
                role=OperatorRole.HUB_OPERATOR,
                la_codes=(LA,),
                hub_id="north",
                key_hash=hash_api_key(KEYS[ADA]),
            ),
            Operator(name=GRACE, role=OperatorRole.LA_OPERATOR, la_codes=(LA,), key_hash=hash_api_key(KEYS[GRACE])),
        ),
    )
    path = directory / "tenants.json"
    save_registry(registry, path)
    return path


def _d(value: str | None) -> date | None:
    return datetime.strptime(value, "%d/%m/%Y").date() if value else None


def expected_in_scope(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """R-SCOPE-1..3 / R-FIL-1..3 written out independently of the service's SQL."""
    events: list[dict[str, Any]] = []
    carers: list[dict[str, Any]] = []
    for r in rows:
        if "association" in (r.get("client_type") or "").lower():
            carers.append(r)
            continue
        start, end, death = _d(r.get("event_start_date")), _d(r.get("event_end_date")), _d(r.get("date_of_death"))
        if death is not None and (death < P_START or (start is not None and death < start)):
            continue
        if death is not None and (end is None or death < end):
            end = death
        if (r.get("event_type") or "").lower() == "service":
            active = (start is None or start <= P_END) and (end is None or end >= P_START)
        else:
            active = end is not None and P_START <= end <= P_END and (start is None or start <= P_END)
        if active:
            events.append(r)
    people = {r.get("la_person_unique_identifier") for r in events}
    linked = ("adult_1_linked_person_id", "adult_2_linked_person_id", "adult_3_linked_person_id")
    kept_carers = [c for c in carers if not any(c.get(n) for n in linked) or any(c.get(n) in people for n in linked)]
    return events + kept_carers


def identity(row: dict[str, Any]) -> tuple[str, ...]:
    keys = ("la_person_unique_identifier", "event_type", "event_reference", "event_start_date", "client_type")
    return tuple((row.get(k) or "") for k in keys)


def file_identities(data: bytes) -> tuple[list[str], list[tuple[str, ...]]]:
    spec = load_spec()
    by_header = {f.header: f.name for f in spec.file_fields}
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    header = list(reader.fieldnames or [])
    rows = [identity({by_header[h]: v for h, v in r.items()}) for r in reader]
    return header, rows


class Nhse:
    """NHS England's side of MESH in the sandbox: the receiving mailbox."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _client(self) -> MeshClient:
        return MeshClient(self.url, RECEIVER, "password", shared_key=b"Banana", verify=False)

    def inbox(self) -> list[str]:
        with self._client() as c:
            return list(c.list_messages())

    def read_and_acknowledge(self, message_id: str) -> bytes:
        with self._client() as c:
            msg = c.retrieve_message(message_id)
            data = msg.read()
            msg.acknowledge()
        return bytes(data)


@pytest.fixture
def nhse(mesh_sandbox: str) -> Nhse:
    box = Nhse(mesh_sandbox)
    for mid in box.inbox():  # start from an empty inbox (the sandbox is shared by the session)
        box.read_and_acknowledge(mid)
    return box


@pytest.fixture
def env(kafka_bootstrap: str, topic_prefix: str, mesh_sandbox: str, tmp_path: Path) -> dict[str, str]:
    return service_env(
        kafka_bootstrap,
        topic_prefix,
        CLD_TENANTS_FILE=str(provision_registry(tmp_path)),
        CLD_SUBMISSION_STATE_DIR=str(tmp_path / "submission-state"),
        CLD_SUBMISSION_TRANSPORT="mesh",
        CLD_SUBMISSION_ACK_POLL_SECONDS="0.5",
        CLD_GAUGE_INTERVAL_SECONDS="5",  # the periodic pick-up of approved submissions whose send claim lapsed
        CLD_MESH_URL=mesh_sandbox,
        CLD_MESH_MAILBOX="X26ABC1",
        CLD_MESH_PASSWORD="password",
        CLD_MESH_SHARED_KEY="Banana",
        CLD_MESH_RECIPIENT_MAILBOX=RECEIVER,
        CLD_MESH_WORKFLOW_ID="TEST_WORKFLOW",
        CLD_MESH_VERIFY_TLS="false",
        CLD_MESH_MAX_CHUNK_SIZE=str(256 * 1024),
        CLD_MESH_REQUEST_TIMEOUT="10",
        CLD_MESH_RETRY=json.dumps({"max_attempts": 200, "base_delay": 0.5, "max_delay": 2, "deadline": 180}),
    )


@pytest.fixture
def processes(env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, ServiceProcess]]:
    procs: dict[str, ServiceProcess] = {}
    try:
        yield procs
    finally:
        for p in procs.values():
            p.stop()


def start(procs: dict[str, ServiceProcess], env: dict[str, str], log_dir: Path, *names: str) -> None:
    for name in names:
        p = ServiceProcess(name, env, log_dir).start()
        procs[name] = p
    for name in names:
        procs[name].wait_healthy()


def wait_for(predicate: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)  # polling interval of a bounded wait
    raise TimeoutError(f"{what} not within {timeout} s")


def status(url: str, sid: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/v1/submissions/{sid}/status", headers=auth(GRACE), timeout=10).json())


def feed_generated_dataset(procs: dict[str, ServiceProcess], *, people: int) -> list[dict[str, Any]]:
    rows = [row for row, _ in generate_rows(people=people, seed=11, period_end=P_END, la_code=LA)]
    r = httpx.post(
        f"{procs['ingest'].url}/v1/uploads",
        params={"la": LA},
        content=csv_text(rows).encode(),
        headers={"content-type": "text/csv", **auth(SOURCE)},
        timeout=60,
    )
    assert r.status_code == 202, r.text
    return rows


def wait_until_held(url: str, expected: int) -> None:
    params = {"period_start": P_START.isoformat(), "period_end": P_END.isoformat()}

    def held() -> bool:
        got = httpx.get(f"{url}/v1/state/{LA}", params=params, headers=auth(ADA), timeout=10).json()
        return bool(got["in_scope"] >= expected)

    wait_for(held, timeout=120, what=f"{expected} in-scope records in the submission state")


def request_and_approve(url: str) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/submissions", json=PERIOD, headers=auth(ADA), timeout=120)
    assert r.status_code == 201, r.text
    sub = r.json()["submission"]
    assert sub["requested_by"] == ADA
    a = httpx.post(
        f"{url}/v1/submissions/{sub['submission_id']}/approve",
        json={"accept_errors": True},
        headers=auth(GRACE),
        timeout=60,
    )
    assert a.status_code == 200, a.text
    assert a.json()["approved_by"] == GRACE
    return dict(sub)


def test_generated_dataset_is_submitted_as_exactly_one_complete_message(
    env: dict[str, str], processes: dict[str, ServiceProcess], nhse: Nhse, tmp_path: Path
) -> None:
    start(processes, env, tmp_path, "ingest", "validation", "submission")
    url = processes["submission"].url
    rows = feed_generated_dataset(processes, people=300)
    expected = expected_in_scope(rows)
    wait_until_held(url, len(expected))

    sub = request_and_approve(url)
    sid = sub["submission_id"]
    assert sub["rows"] == len(expected)
    # Requesting again with nothing changed gives the same submission back: no second message.
    again = httpx.post(f"{url}/v1/submissions", json=PERIOD, headers=auth(ADA), timeout=120)
    assert again.json()["submission"]["submission_id"] == sid

    [message_id] = wait_for(nhse.inbox, timeout=120, what="a message in the NHS England inbox")
    data = nhse.read_and_acknowledge(message_id)
    header, got = file_identities(data)
    assert header == [f.header for f in load_spec().file_fields]
    assert sorted(got) == sorted(identity(r) for r in expected)

    final = wait_for(lambda: (s := status(url, sid))["state"] == "acknowledged" and s, timeout=60, what="acknowledged")
    assert final["message_id"] == message_id
    assert nhse.inbox() == []
    events = asyncio.run(
        collect(
            env["KAFKA_BOOTSTRAP_SERVERS"],
            env["CLD_TOPIC_PREFIX"] + topics.SUBMISSIONS,
            until=lambda s: any(e["state"] == "acknowledged" for e in s),
        )
    )
    assert [e["state"] for e in events if e["submission_id"] == sid] == [
        "requested",
        "assembled",
        "checked",
        "approved",
        "sent",
        "acknowledged",
    ]


def test_a_crash_between_approved_and_acknowledged_still_delivers_exactly_once(
    env: dict[str, str], processes: dict[str, ServiceProcess], nhse: Nhse, tmp_path: Path
) -> None:
    start(processes, env, tmp_path, "ingest", "validation", "submission")
    url = processes["submission"].url
    rows = feed_generated_dataset(processes, people=200)
    wait_until_held(url, len(expected_in_scope(rows)))

    sub = request_and_approve(url)
    sid = sub["submission_id"]
    processes["submission"].kill()  # SIGKILL right after approval: sending may or may not have happened
    killed_in = status_file_state(env, sid)
    processes["submission"] = ServiceProcess("submission", env, tmp_path).start()
    processes["submission"].wait_healthy()
    url = processes["submission"].url

    [message_id] = wait_for(nhse.inbox, timeout=120, what="a message in the NHS England inbox")
    # Kill again while it polls for the acknowledgement, then acknowledge as NHS England.
    wait_for(lambda: status(url, sid)["state"] == "sent", timeout=60, what="sent")
    processes["submission"].kill()
    nhse.read_and_acknowledge(message_id)
    processes["submission"] = ServiceProcess("submission", env, tmp_path).start()
    processes["submission"].wait_healthy()
    url = processes["submission"].url
    final = wait_for(lambda: (s := status(url, sid))["state"] == "acknowledged" and s, timeout=60, what="acknowledged")
    assert final["message_id"] == message_id
    assert nhse.inbox() == []  # exactly one message was ever delivered
    assert killed_in in {"approved", "sent"}


def status_file_state(env: dict[str, str], sid: str) -> str:
    """The persisted state after the kill, read from the state directory (the process is gone)."""
    import sqlite3

    db = Path(env["CLD_SUBMISSION_STATE_DIR"]) / "submissions.sqlite3"
    with sqlite3.connect(db) as conn:
        (state,) = conn.execute("SELECT state FROM submissions WHERE submission_id = ?", (sid,)).fetchone()
    return str(state)


OUTAGE_SECONDS = 60


def test_a_mesh_outage_is_ridden_out(
    env: dict[str, str],
    processes: dict[str, ServiceProcess],
    nhse: Nhse,
    mesh_sandbox_control: MeshSandboxControl,
    tmp_path: Path,
) -> None:
    start(processes, env, tmp_path, "ingest", "validation", "submission")
    url = processes["submission"].url
    rows = feed_generated_dataset(processes, people=100)
    wait_until_held(url, len(expected_in_scope(rows)))

    mesh_sandbox_control.stop()
    outage_started = time.monotonic()
    try:
        sub = request_and_approve(url)
        sid = sub["submission_id"]
        # Retries are under way while MESH is down (the send counter's 'retry' outcome goes up).
        wait_for(lambda: _retries(url) > 0, timeout=60, what="a MESH retry")
        assert status(url, sid)["state"] == "approved"
        # The outage lasts a full minute (the "MESH outage of a minute"), with retries going on through it.
        wait_for(
            lambda: time.monotonic() - outage_started >= OUTAGE_SECONDS and _retries(url) >= 3,
            timeout=OUTAGE_SECONDS + 60,
            what="a minute of MESH outage with retries under way",
        )
        assert status(url, sid)["state"] == "approved"
    finally:
        mesh_sandbox_control.start()

    final = wait_for(lambda: (s := status(url, sid))["state"] in {"sent", "failed"} and s, timeout=180, what="sent")
    assert final["state"] == "sent", final
    [message_id] = wait_for(nhse.inbox, timeout=60, what="a message in the NHS England inbox")
    assert message_id == final["message_id"]
    nhse.read_and_acknowledge(message_id)
    wait_for(lambda: status(url, sid)["state"] == "acknowledged", timeout=60, what="acknowledged")


def _retries(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith('cld_mesh_send_total{outcome="retry"}'):
            return float(line.split()[-1])
    return 0.0


def _in_scope(url: str) -> int:
    params = {"period_start": P_START.isoformat(), "period_end": P_END.isoformat()}
    got = httpx.get(f"{url}/v1/state/{LA}", params=params, headers=auth(ADA), timeout=10).json()
    return int(got["in_scope"])


def test_a_repeated_cld_event_id_is_one_record_in_the_submission_state(
    env: dict[str, str], processes: dict[str, ServiceProcess], kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Re-delivery of the same ``cld-event-id`` on the raw topic (issue 3) does not create a second record."""
    start(processes, env, tmp_path, "validation", "submission")
    url = processes["submission"].url
    rows = [row for row, _ in generate_rows(people=30, seed=5, period_end=P_END, la_code=LA)]
    first, second = expected_in_scope(rows)[:2]

    async def publish() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for event_id, row in (("dup-1", first), ("dup-1", first), ("dup-1", first), ("sentinel", second)):
                value = json.dumps({k: v for k, v in row.items() if v}).encode()
                headers = [("cld-source", SOURCE.encode()), ("cld-event-id", event_id.encode())]
                await producer.send_and_wait(topic_prefix + topics.RAW, value, key=LA.encode(), headers=headers)
        finally:
            await producer.stop()

    asyncio.run(publish())
    # One LA = one key = one partition: the sentinel is processed after every copy of dup-1.
    wait_until_held(url, 2)
    assert _in_scope(url) == 2
