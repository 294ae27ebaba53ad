"""A real Prometheus scrapes the running mesh: the metrics arrive with the values the traffic implies.

Real processes throughout: Kafka (``kafka_bootstrap``), ``cld serve`` for ingest, validation, pseudonymisation
and submission on free ports, and the Debian ``prometheus`` binary started by ``deploy/prometheus/prometheus.sh``
(the same script as ``make prometheus-up``) with the service ports passed through ``INGEST_PORT`` ... and its
own run dir. The shipped scrape config (5 s interval) is used unchanged: what is tested is what operators run.

Known traffic goes in through every entry point: a JSON batch and a CSV upload through ingest (channels http
and csv), records and one malformed message straight onto the raw topic (channel kafka), some with known DQ
failures. Then Prometheus is queried over ``/api/v1/query`` with bounded polling until each expectation holds.
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from cld_cli.cmd_serve import composition_root
from cld_schemas import topics
from cld_schemas.spec import load_spec
from tests.support.processes import ServiceProcess, free_port, produce, service_env
from tests.support.records import service_record

pytestmark = pytest.mark.integration

REPO: Final = Path(__file__).resolve().parents[2]
PROMETHEUS_SH: Final = REPO / "deploy" / "prometheus" / "prometheus.sh"
LA: Final = "318"
JOBS: Final = {
    "ingest": "cld-ingest",
    "validation": "cld-validation",
    "pseudonymisation": "cld-pseudonymisation",
    "submission": "cld-submission",
}
PORT_VARS: Final = {
    "ingest": "INGEST_PORT",
    "validation": "VALIDATION_PORT",
    "pseudonymisation": "PSEUDONYMISATION_PORT",
    "submission": "SUBMISSION_PORT",
}
_SCRIPT_ENV_PREFIXES: Final = ("PROMETHEUS_", "CLD_", *PORT_VARS.values())
WAIT_SECONDS: Final = 90.0
"""Upper bound of each wait: several 5 s scrape intervals plus the lag monitor's refresh."""

# The traffic. A failing record fails on one known rule and field (others may add more findings).
NHS_FIELD, NHS_RULE = "NHS Number", "CLD020"  # nhs_number "1234": not a valid NHS number
GENDER_FIELD, GENDER_RULE = "Gender", "CLD002"  # gender "Robot": not in the code list
HTTP_RECORDS, HTTP_NHS_FAILED = 5, 1
CSV_ROWS, CSV_GENDER_FAILED = 4, 1
KAFKA_RECORDS, KAFKA_NHS_FAILED = 3, 1
READABLE: Final = HTTP_RECORDS + CSV_ROWS + KAFKA_RECORDS
FAILED: Final = HTTP_NHS_FAILED + CSV_GENDER_FAILED + KAFKA_NHS_FAILED
MALFORMED_REASON: Final = "not_json"


# ---- Prometheus ---------------------------------------------------------------------------------------


@dataclass
class PrometheusServer:
    """A Prometheus run by deploy/prometheus/prometheus.sh with its own port and run dir."""

    env: dict[str, str]
    url: str = ""

    @classmethod
    def start(cls, run_dir: Path, service_ports: Mapping[str, int]) -> PrometheusServer:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(_SCRIPT_ENV_PREFIXES)}
        env = {
            **inherited,
            "PROMETHEUS_PORT": str(free_port()),
            "PROMETHEUS_RUN_DIR": str(run_dir),
            "PROMETHEUS_RETENTION": "1h",
            "CLD_TARGET_HOST": "127.0.0.1",
            **{PORT_VARS[name]: str(port) for name, port in service_ports.items()},
        }
        server = cls(env)
        out = server._script("start", timeout=180)
        lines = [line for line in out.stdout.splitlines() if line.startswith("PROMETHEUS_URL=")]
        if out.returncode != 0 or len(lines) != 1:
            server.stop()
            raise RuntimeError(f"prometheus.sh start failed ({out.returncode}):\n{out.stderr[-4000:]}")
        server.url = lines[0].split("=", 1)[1]
        return server

    def _script(self, command: str, *, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(PROMETHEUS_SH), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        self._script("stop", timeout=60)

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """Instant query: (labels, value) per series of the vector result."""
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        return [(s["metric"], float(s["value"][1])) for s in body["data"]["result"]]

    def eventually(
        self,
        expr: str,
        check: Callable[[list[tuple[dict[str, str], float]]], bool],
        *,
        timeout: float = WAIT_SECONDS,
    ) -> list[tuple[dict[str, str], float]]:
        """Poll ``expr`` until ``check(result)`` holds; fail with the last result after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        result: list[tuple[dict[str, str], float]] = []
        while True:
            result = self.query(expr)
            if check(result):
                return result
            if time.monotonic() >= deadline:
                pytest.fail(f"not within {timeout:.0f} s: {expr}\nlast result: {result}")
            time.sleep(0.5)  # polling interval of a bounded wait, not synchronisation


def by(label: str, result: list[tuple[dict[str, str], float]]) -> dict[str, float]:
    return {labels.get(label, ""): value for labels, value in result}


# ---- the running mesh -----------------------------------------------------------------------------------


@dataclass
class Stack:
    bootstrap: str
    prefix: str
    prometheus: PrometheusServer
    services: dict[str, ServiceProcess]
    skipped: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return self.prefix + name


def _csv(rows: list[dict[str, Any]]) -> bytes:
    spec = load_spec()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([f.header for f in spec.fields])
    for row in rows:
        writer.writerow([row.get(f.name) or "" for f in spec.fields])
    return out.getvalue().encode()


def _record(i: int, **overrides: Any) -> dict[str, Any]:
    return service_record(event_reference=f"EV{i:06d}", la_person_unique_identifier=f"P{i:06d}", **overrides)


def send_traffic(stack: Stack) -> None:
    """The known traffic: http batch, csv upload, raw-topic records and one malformed raw message."""
    run = uuid.uuid4().hex[:8]
    batch = [_record(i) for i in range(HTTP_RECORDS - HTTP_NHS_FAILED)]
    batch += [_record(100 + i, nhs_number="1234") for i in range(HTTP_NHS_FAILED)]
    rows = [_record(200 + i) for i in range(CSV_ROWS - CSV_GENDER_FAILED)]
    rows += [_record(300 + i, gender="Robot") for i in range(CSV_GENDER_FAILED)]
    auth = {"X-API-Key": "cldk_scrape-test", "X-CLD-Source": "scrape-test"}
    with httpx.Client(base_url=stack.services["ingest"].url, timeout=30, headers=auth) as client:
        r = client.post("/v1/records/batch", json=batch, headers={"Idempotency-Key": f"scrape-{run}"})
        assert r.status_code == 202, r.text
        assert r.json()["records"] == HTTP_RECORDS
        r = client.post("/v1/uploads", params={"la": LA}, content=_csv(rows), headers={"content-type": "text/csv"})
        assert r.status_code == 202, r.text
        assert r.json()["rows"] == CSV_ROWS

    def raw(i: int, record: dict[str, Any]) -> tuple[bytes, bytes, dict[str, str]]:
        headers = {topics.HEADER_EVENT_ID: f"kafka-{run}-{i}", topics.HEADER_SOURCE: "scrape-test"}
        return LA.encode(), json.dumps(record).encode(), headers

    messages = [raw(i, _record(400 + i)) for i in range(KAFKA_RECORDS - KAFKA_NHS_FAILED)]
    messages += [raw(50 + i, _record(500 + i, nhs_number="1234")) for i in range(KAFKA_NHS_FAILED)]
    messages.append((LA.encode(), b'{"la_code": "318", not json', {topics.HEADER_EVENT_ID: f"bad-{run}"}))
    sent = asyncio.run(produce(stack.bootstrap, stack.topic(topics.RAW), messages))
    assert sent == KAFKA_RECORDS + 1


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The four services and Prometheus, started once for this module; always stopped at the end."""
    tmp = tmp_path_factory.mktemp("scrape")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    env = service_env(
        kafka_bootstrap,
        prefix,
        CLD_TENANCY_MODE="open",  # synthetic data; the tenants registry has its own tests
        CLD_SUBMISSION_STATE_DIR=str(tmp / "submission"),
        CLD_LA_CODES=json.dumps([LA]),
        CLD_GAUGE_INTERVAL_SECONDS="2",
    )
    names = ["ingest", "validation", "pseudonymisation", "submission"]
    skipped: dict[str, str] = {}
    if importlib.util.find_spec(composition_root("submission")) is None:
        names.remove("submission")
        skipped["submission"] = f"module {composition_root('submission')} is not installed"
    services: dict[str, ServiceProcess] = {}
    prometheus: PrometheusServer | None = None
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        for name in names:
            services[name] = ServiceProcess(name, env, tmp).start()
        for proc in services.values():
            proc.wait_healthy(timeout=90)
        timings["services_healthy"] = time.monotonic() - t0
        ports = {name: proc.port for name, proc in services.items()}
        ports.setdefault("submission", free_port())  # nothing listens there when submission is skipped
        t1 = time.monotonic()
        prometheus = PrometheusServer.start(tmp / "prometheus", ports)
        timings["prometheus_ready"] = time.monotonic() - t1
        stack = Stack(kafka_bootstrap, prefix, prometheus, services, skipped, timings)
        t2 = time.monotonic()
        send_traffic(stack)
        timings["traffic_sent"] = time.monotonic() - t2
        yield stack
        timings["checks_after_traffic"] = time.monotonic() - t2
    finally:
        t3 = time.monotonic()
        if prometheus is not None:
            prometheus.stop()
        for proc in services.values():
            proc.stop()
        timings["teardown"] = time.monotonic() - t3
        # Figures for the record (visible with -s), never asserted.
        print("scrape timings (s): " + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()), file=sys.stderr)


@pytest.fixture
def prom(stack: Stack) -> PrometheusServer:
    return stack.prometheus


# ---- what Prometheus sees -------------------------------------------------------------------------------


def test_every_service_job_is_up(stack: Stack, prom: PrometheusServer) -> None:
    jobs = [JOBS[name] for name in stack.services]
    result = prom.eventually(
        'up{job=~"cld-.+"}', lambda r: all(by("job", r).get(job) == 1.0 for job in jobs), timeout=60
    )
    up = by("job", result)
    assert {job: up[job] for job in jobs} == dict.fromkeys(jobs, 1.0)
    if "submission" in stack.skipped:
        assert up.get("cld-submission") == 0.0  # scraped, nobody there


def test_validated_records_per_outcome_equal_what_was_sent(prom: PrometheusServer) -> None:
    want = {"passed": float(READABLE - FAILED), "failed": float(FAILED)}
    result = prom.eventually(
        f'sum by (outcome) (cld_records_validated_total{{job="cld-validation", la_code="{LA}"}})',
        lambda r: by("outcome", r) == want,
    )
    assert by("outcome", result) == want


def test_received_records_per_channel_come_from_ingest_and_validation(prom: PrometheusServer) -> None:
    want = {"http": float(HTTP_RECORDS), "csv": float(CSV_ROWS), "kafka": float(KAFKA_RECORDS)}
    result = prom.eventually(
        f'sum by (channel, job) (cld_records_received_total{{la_code="{LA}"}})',
        lambda r: by("channel", r) == want,
    )
    jobs = {labels["channel"]: labels["job"] for labels, _ in result}
    assert by("channel", result) == want
    assert jobs == {"http": "cld-ingest", "csv": "cld-ingest", "kafka": "cld-validation"}


def test_findings_carry_the_rule_and_the_spec_field(prom: PrometheusServer) -> None:
    want = {
        (NHS_RULE, NHS_FIELD): float(HTTP_NHS_FAILED + KAFKA_NHS_FAILED),
        (GENDER_RULE, GENDER_FIELD): float(CSV_GENDER_FAILED),
    }
    expr = f'sum by (rule, field) (cld_findings_total{{job="cld-validation", la_code="{LA}"}})'

    def seen(r: list[tuple[dict[str, str], float]]) -> dict[tuple[str, str], float]:
        return {(labels["rule"], labels["field"]): value for labels, value in r}

    result = prom.eventually(expr, lambda r: all(seen(r).get(k) == v for k, v in want.items()))
    findings = seen(result)
    assert {k: findings[k] for k in want} == want
    assert all(rule.startswith("CLD") and field for rule, field in findings), findings


def test_the_malformed_message_is_counted_as_a_dead_letter_with_its_reason(prom: PrometheusServer) -> None:
    result = prom.eventually(
        'sum by (service, reason) (cld_deadletters_total{job="cld-validation"}) > 0',
        lambda r: len(r) > 0 and sum(v for _, v in r) >= 1,
    )
    assert [(labels["service"], labels["reason"], value) for labels, value in result] == [
        ("validation", MALFORMED_REASON, 1.0)
    ]


def test_every_readable_record_is_pseudonymised(prom: PrometheusServer) -> None:
    # Records that fail DQ are reported, not dropped: they are pseudonymised too; the dead letter is not.
    result = prom.eventually(
        f'sum(cld_records_pseudonymised_total{{job="cld-pseudonymisation", la_code="{LA}"}})',
        lambda r: len(r) == 1 and r[0][1] == READABLE,
    )
    assert result[0][1] == READABLE
    risk = prom.eventually(
        f'cld_risk_min_k{{job="cld-pseudonymisation", la_code="{LA}"}}', lambda r: len(r) == 1, timeout=30
    )
    assert risk[0][0]["period"] == "2025-04-01_2026-03-31"


def test_consumer_lag_is_reported_per_partition_and_drains(stack: Stack, prom: PrometheusServer) -> None:
    groups = {
        "cld-validation": ("cld-validation", stack.topic(topics.RAW)),
        "cld-pseudonymisation": ("cld-pseudonymisation", stack.topic(topics.VALIDATED)),
    }
    if "submission" in stack.services:
        groups["cld-submission"] = ("cld-submission", stack.topic(topics.VALIDATED))
    for job, (group, topic) in groups.items():
        selector = f'cld_consumer_lag{{job="{job}", group="{group}", topic="{topic}"}}'
        partitions = prom.eventually(selector, lambda r: len(r) == 6)
        assert sorted(int(labels["partition"]) for labels, _ in partitions) == list(range(6))
        drained = prom.eventually(f"sum({selector})", lambda r: len(r) == 1 and r[0][1] == 0.0)
        assert drained[0][1] == 0.0, job


def test_faststream_middleware_metrics_arrive(stack: Stack, prom: PrometheusServer) -> None:
    published = prom.eventually(
        'sum(faststream_published_messages_total{job="cld-ingest", status="success"})',
        lambda r: len(r) == 1 and r[0][1] >= HTTP_RECORDS + CSV_ROWS,
    )
    assert published[0][1] >= HTTP_RECORDS + CSV_ROWS
    for name in stack.services:
        if name == "ingest":
            continue
        job = JOBS[name]
        names = prom.eventually(
            f'count by (__name__) ({{__name__=~"faststream_.+", job="{job}"}})',
            lambda r: "faststream_received_messages_total" in by("__name__", r),
        )
        assert "faststream_received_processed_messages_duration_seconds_bucket" in by("__name__", names), job
    received = prom.eventually(
        'sum(faststream_received_messages_total{job="cld-validation"})',
        lambda r: len(r) == 1 and r[0][1] >= 1,
    )
    assert received[0][1] >= 1


def test_submission_service_is_scraped_with_its_gauges(stack: Stack, prom: PrometheusServer) -> None:
    if "submission" in stack.skipped:
        pytest.skip(f"submission service not started: {stack.skipped['submission']}")
    send = prom.eventually('cld_mesh_send_total{job="cld-submission"}', lambda r: len(r) == 3)
    assert by("outcome", send) == {"success": 0.0, "retry": 0.0, "failed": 0.0}
    acknowledged = prom.eventually('cld_mesh_acknowledged_total{job="cld-submission"}', lambda r: len(r) == 2)
    assert by("outcome", acknowledged) == {"acknowledged": 0.0, "failed": 0.0}
    remaining = prom.eventually(
        f'cld_submission_deadline_remaining_seconds{{job="cld-submission", la_code="{LA}"}}', lambda r: len(r) == 1
    )
    # seconds to the end of the next deadline day: deadlines are at most 92 days apart (31 Jul -> 31 Oct)
    assert 0 < remaining[0][1] <= 93 * 86400
    approved = prom.eventually(
        f'cld_submission_approved_for_next_deadline{{job="cld-submission", la_code="{LA}"}}', lambda r: len(r) == 1
    )
    assert approved[0][1] == 0.0  # nothing was requested, let alone approved
