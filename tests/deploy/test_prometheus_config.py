"""Prometheus: scrape config, alert rules and their unit tests, checked by the real promtool; a real server."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import metric_names
from tests.deploy.tools import DEPLOY, OPERATIONS_MD, PROMETHEUS_DIR, SERVICES, contract_metrics, require_tool, run

INSTALL_HINT = "bash deploy/prometheus/install.sh"
SCRIPT = PROMETHEUS_DIR / "prometheus.sh"
JOBS = {f"cld-{name}": port for name, port in SERVICES.items()}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", INSTALL_HINT)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _alerts() -> list[dict[str, Any]]:
    doc = _load(PROMETHEUS_DIR / "alerts.yml")
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def _jobs(config: dict[str, Any]) -> dict[str, list[str]]:
    return {
        job["job_name"]: [target for sc in job["static_configs"] for target in sc["targets"]]
        for job in config["scrape_configs"]
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- static shape


def test_shell_scripts_parse() -> None:
    scripts = sorted(PROMETHEUS_DIR.glob("*.sh")) + sorted((DEPLOY / "compose").glob("*.sh"))
    assert {p.name for p in scripts} >= {"prometheus.sh", "install.sh", "fetch-compose-schema.sh"}
    for script in scripts:
        run(["bash", "-n", str(script)])


def test_local_config_scrapes_the_four_services_every_5s() -> None:
    config = _load(PROMETHEUS_DIR / "prometheus.yml")
    assert config["global"]["scrape_interval"] == "5s"
    assert config["rule_files"] == ["alerts.yml"]
    assert _jobs(config) == {job: [f"127.0.0.1:{port}"] for job, port in JOBS.items()}


def test_compose_config_has_the_same_jobs_on_service_names() -> None:
    config = _load(DEPLOY / "compose" / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    jobs = _jobs(config)
    for name, port in SERVICES.items():
        assert jobs[f"cld-{name}"] == [f"{name}:{port}"]


def test_no_target_label_shadows_a_metric_label() -> None:
    # A target label named like a metric label would turn the scraped one into exported_<name>.
    metric_labels = {"service", "la_code", "group", "topic", "partition", "outcome", "state", "reason", "rule"}
    for path in (PROMETHEUS_DIR / "prometheus.yml", DEPLOY / "compose" / "prometheus.yml"):
        for job in _load(path)["scrape_configs"]:
            for sc in job["static_configs"]:
                assert not metric_labels & set(sc.get("labels", {})), (path, job["job_name"])


# ---------------------------------------------------------------- promtool


def test_committed_configs_pass_promtool(promtool: str, tmp_path: Path) -> None:
    run([promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    # The compose config expects alerts.yml beside it (both are mounted into /etc/prometheus).
    shutil.copy(DEPLOY / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    out = run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert "SUCCESS" in out


def _script_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without any port setting of the caller's, and an empty `make up` run dir of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLD_") and not k.endswith("_PORT")}
    (tmp_path / "local").mkdir(exist_ok=True)
    return env | {"PROMETHEUS_RUN_DIR": str(tmp_path / "run"), "CLD_LOCAL_RUN_DIR": str(tmp_path / "local")} | extra


def _render(env: dict[str, str]) -> tuple[dict[str, list[str]], str]:
    result = subprocess.run(
        ["bash", str(SCRIPT), "render"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return _jobs(_load(Path(result.stdout.strip().splitlines()[0]))), result.stderr


def test_rendered_config_takes_the_services_own_port_settings(tmp_path: Path) -> None:
    """Issue 10: `make prometheus-up` read only INGEST_PORT ..., not the CLD_*_PORT that `make up` and the
    services read, so it scraped (and alerted on) whatever answered on 8001-8004."""
    env = _script_env(
        tmp_path,
        CLD_INGEST_PORT="18101",
        CLD_VALIDATION_PORT="18102",
        CLD_PSEUDONYMISATION_PORT="18103",
        CLD_SUBMISSION_PORT="18104",
    )
    jobs, stderr = _render(env)
    assert jobs == {
        "cld-ingest": ["127.0.0.1:18101"],
        "cld-validation": ["127.0.0.1:18102"],
        "cld-pseudonymisation": ["127.0.0.1:18103"],
        "cld-submission": ["127.0.0.1:18104"],
    }
    assert "cld-ingest -> 127.0.0.1:18101 (CLD_INGEST_PORT)" in stderr


def test_render_scrapes_the_instances_make_up_started(tmp_path: Path) -> None:
    """Without port settings, the ports `make up` recorded for its still-running instances are the targets; a
    stale PID file is ignored (default port, with a warning)."""
    env = _script_env(tmp_path)
    local = tmp_path / "local"
    # a stand-in for `cld serve validation`: its command line names the service, as up.sh's check expects
    fake = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "serve", "validation"], stdin=subprocess.PIPE
    )
    try:
        (local / "validation.pid").write_text(f"{fake.pid}\n")
        (local / "validation.port").write_text("18212\n")
        (local / "ingest.pid").write_text("999999999\n")  # not running
        (local / "ingest.port").write_text("18211\n")
        jobs, stderr = _render(env)
    finally:
        assert fake.stdin is not None
        fake.stdin.close()
        fake.wait(timeout=10)
    assert jobs["cld-validation"] == ["127.0.0.1:18212"]
    assert jobs["cld-ingest"] == ["127.0.0.1:8001"]
    assert "WARNING no CLD_INGEST_PORT and no running make up instance" in stderr
    assert jobs["cld-submission"] == ["127.0.0.1:8004"]


def test_render_refuses_port_settings_that_disagree(tmp_path: Path) -> None:
    env = _script_env(tmp_path, CLD_SUBMISSION_PORT="18004", SUBMISSION_PORT="18005")
    result = subprocess.run(
        ["bash", str(SCRIPT), "render"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "CLD_SUBMISSION_PORT=18004 and SUBMISSION_PORT=18005 disagree" in result.stderr


def test_rendered_config_uses_ports_from_env_and_passes_promtool(promtool: str, tmp_path: Path) -> None:
    env = _script_env(tmp_path) | {
        "INGEST_PORT": "18002",  # swapped with validation on purpose
        "VALIDATION_PORT": "18001",
        "PSEUDONYMISATION_PORT": "18003",
        "SUBMISSION_PORT": "18004",
    }
    rendered = Path(run(["bash", str(SCRIPT), "render"], env=env).strip().splitlines()[0])
    assert rendered == tmp_path / "run" / "prometheus.yml"
    run([promtool, "check", "config", str(rendered)])
    config = _load(rendered)
    assert _jobs(config) == {
        "cld-ingest": ["127.0.0.1:18002"],
        "cld-validation": ["127.0.0.1:18001"],
        "cld-pseudonymisation": ["127.0.0.1:18003"],
        "cld-submission": ["127.0.0.1:18004"],
    }
    assert config["rule_files"] == [str(PROMETHEUS_DIR / "alerts.yml")]


def test_render_rejects_a_bad_port(tmp_path: Path) -> None:
    env = _script_env(tmp_path, SUBMISSION_PORT="80x4")
    result = subprocess.run(
        ["bash", str(SCRIPT), "render"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "SUBMISSION_PORT" in result.stderr


def test_rules_pass_promtool_check(promtool: str) -> None:
    out = run([promtool, "check", "rules", str(PROMETHEUS_DIR / "alerts.yml")])
    assert "SUCCESS" in out


def test_rules_unit_tests_pass(promtool: str) -> None:
    out = run([promtool, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS_DIR)
    assert "SUCCESS" in out


def test_rules_unit_tests_can_fail(promtool: str, tmp_path: Path) -> None:
    # The same tests against rules with a raised lag threshold must fail: they assert something.
    rules = (PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8")
    mutated = rules.replace("(cld_consumer_lag)) > 1000", "(cld_consumer_lag)) > 1000000")
    assert mutated != rules
    (tmp_path / "alerts.yml").write_text(mutated, encoding="utf-8")
    shutil.copy(PROMETHEUS_DIR / "alerts_test.yml", tmp_path / "alerts_test.yml")
    result = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "CLDConsumerLagGrowing" in result.stdout + result.stderr


# ---------------------------------------------------------------- rule content


EXPECTED_ALERTS = {
    "CLDServiceDown",
    "CLDConsumerLagGrowing",
    "CLDConsumerAccountingMismatch",
    "CLDDeadLettersAppearing",
    "CLDDataQualityFailureShareHigh",
    "CLDDataQualityFailureShareJump",
    "CLDSubmissionFailed",
    "CLDSubmissionNotAcknowledged",
    "CLDSubmissionDeadlineApproaching",
    "CLDSubmissionDeadlineImminent",
}


def _headings_anchors(markdown: str) -> set[str]:
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    alerts = _alerts()
    assert {a["alert"] for a in alerts} == EXPECTED_ALERTS
    anchors = _headings_anchors(OPERATIONS_MD.read_text(encoding="utf-8"))
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning"}, alert["alert"]
        annotations = alert["annotations"]
        assert annotations["summary"].strip(), alert["alert"]
        assert annotations["description"].strip(), alert["alert"]
        doc, _, anchor = annotations["runbook_url"].partition("#")
        assert doc == "docs/operations.md", alert["alert"]
        assert anchor == alert["alert"].lower(), alert["alert"]
        assert anchor in anchors, f"docs/operations.md has no heading for {alert['alert']}"


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = _load(PROMETHEUS_DIR / "alerts_test.yml")["tests"]
    fires: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fires >= EXPECTED_ALERTS, EXPECTED_ALERTS - fires
    assert silent >= EXPECTED_ALERTS, EXPECTED_ALERTS - silent


def test_rules_only_use_contract_metrics() -> None:
    contract = set(contract_metrics())
    doc = _load(PROMETHEUS_DIR / "alerts.yml")
    recorded = {rule["record"] for group in doc["groups"] for rule in group["rules"] if "record" in rule}
    used: set[str] = set()
    for group in doc["groups"]:
        for rule in group["rules"]:
            names = metric_names(rule["expr"])
            unknown = names - contract - recorded - {"up"}
            assert not unknown, f"{rule.get('alert') or rule.get('record')} uses {unknown}, not in docs/TEAM.md"
            used |= names
    # The alerts cover the contract metrics the brief names.
    assert used >= {
        "up",
        "cld_consumer_lag",
        "cld_deadletters_total",
        "cld_records_validated_total",
        "cld_submission_transitions_total",
        "cld_submissions_sent_by_transport",
        "cld_submission_deadline_remaining_seconds",
        "cld_submission_approved_for_next_deadline",
    }


# ---------------------------------------------------------------- a real server


class _FakeMetrics(http.server.BaseHTTPRequestHandler):
    body = (
        b"# TYPE cld_records_received_total counter\n"
        b'cld_records_received_total{la_code="E09000001",channel="http"} 3\n'
        b"# TYPE cld_consumer_lag gauge\n"
        b'cld_consumer_lag{group="cld-validation",topic="cld.events.raw.v1",partition="0"} 7\n'
    )

    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def fake_ingest() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeMetrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _alive(pid: int) -> bool:
    # A zombie (not yet reaped by its new parent) has an empty cmdline: it counts as gone.
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return cmdline.read_bytes() != b""
    except FileNotFoundError:
        return False


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL built here
        return json.load(response)


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = _get_json(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")[
        "data"
    ]["result"]
    return result


def test_real_prometheus_scrapes_the_services_and_loads_the_rules(tmp_path: Path, fake_ingest: int) -> None:
    require_tool("prometheus", INSTALL_HINT)
    port = _free_port()
    env = os.environ | {
        "PROMETHEUS_PORT": str(port),
        "PROMETHEUS_RUN_DIR": str(tmp_path / "prom"),
        "INGEST_PORT": str(fake_ingest),
        "VALIDATION_PORT": str(_free_port()),  # nothing listens: up == 0
    }
    out = run(["bash", str(SCRIPT), "start"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        assert f"PROMETHEUS_URL={base}" in out
        run(["bash", str(SCRIPT), "status"], env=env)
        pid = int((tmp_path / "prom" / "prometheus.pid").read_text().strip())

        groups = _get_json(f"{base}/api/v1/rules")["data"]["groups"]
        loaded = {rule["name"] for group in groups for rule in group["rules"] if rule["type"] == "alerting"}
        assert loaded == EXPECTED_ALERTS

        # Bounded wait (scrape interval 5 s) for one scrape of each target.
        deadline = time.monotonic() + 30
        up: dict[str, float] = {}
        while time.monotonic() < deadline:
            up = {r["metric"]["job"]: float(r["value"][1]) for r in _query(base, 'up{job=~"cld-.+"}')}
            if {"cld-ingest", "cld-validation"} <= up.keys():
                break
            time.sleep(0.5)
        assert up.get("cld-ingest") == 1.0, up
        assert up.get("cld-validation") == 0.0, up
        lag = _query(base, 'cld_consumer_lag{job="cld-ingest"}')
        assert [r["metric"]["group"] for r in lag] == ["cld-validation"]
    finally:
        run(["bash", str(SCRIPT), "stop"], env=env)
    assert not _alive(pid)
    status = subprocess.run(["bash", str(SCRIPT), "status"], env=env, capture_output=True, timeout=30, check=False)
    assert status.returncode == 1
