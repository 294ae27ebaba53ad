"""`promtool check metrics` on each service's real ``/metrics`` output, from the app built in-process.

Prometheus' naming rules (base units such as seconds and bytes, ``_total`` only on counters, ...) are checked
by promtool on samples, not on bare HELP/TYPE lines; so before scraping, every labelled metric that has no
series yet gets one placeholder series, and the submission service refreshes its gauges for one LA. Issue 10:
``cld_submission_deadline_days_remaining`` broke the base-unit rule and nothing noticed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from tests.deploy.tools import require_tool

SERVICES = ("ingest", "validation", "pseudonymisation", "submission")


def _registry(app: Any) -> CollectorRegistry:
    state = getattr(app, "state", None)
    reg = getattr(state, "registry", None) if state is not None else None
    if reg is None:
        reg = app.context.get("registry")
    assert isinstance(reg, CollectorRegistry)
    return reg


async def _scrape(app: Any) -> str:
    """GET /metrics from the app in-process (no server, no broker)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        r = await client.get("/metrics")
    assert r.status_code == 200
    return r.text


def _build(service: str) -> Any:
    if service == "ingest":
        from cld_ingest.service import IngestSettings, create_app

        return create_app(IngestSettings())
    if service == "validation":
        from cld_validation.service import ValidationSettings
        from cld_validation.service import create_app as create_validation

        return create_validation(ValidationSettings())
    if service == "pseudonymisation":
        from cld_pseudonymisation.service import PseudonymisationSettings
        from cld_pseudonymisation.service import create_app as create_pseudo

        return create_pseudo(PseudonymisationSettings())
    from cld_submission.entrypoints.app import create_app as create_submission
    from cld_submission.entrypoints.settings import SubmissionSettings

    app = create_submission(SubmissionSettings())
    app.state.workflow.refresh_gauges()  # the deadline and state gauges get their series for CLD_LA_CODES
    return app


def _give_every_metric_a_series(registry: CollectorRegistry) -> None:
    for collector in list(registry._collector_to_names):
        if isinstance(collector, MetricWrapperBase) and collector._labelnames and not collector._metrics:
            collector.labels(*("placeholder" for _ in collector._labelnames))


@pytest.fixture(scope="module")
def metrics_text(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("promtool-metrics")
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith(("CLD_", "KAFKA_")):
                mp.delenv(key)
        mp.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing connects
        mp.setenv("CLD_TENANCY_MODE", "open")
        mp.setenv("CLD_PSEUDO_KEY", "44" * 32)
        mp.setenv("CLD_SUBMISSION_STATE_DIR", str(tmp / "submission"))
        mp.setenv("CLD_SUBMISSION_EXPORT_DIR", str(tmp / "export"))
        mp.setenv("CLD_LA_CODES", '["318"]')
        texts: dict[str, str] = {}
        for service in SERVICES:
            app = _build(service)
            _give_every_metric_a_series(_registry(app))
            texts[service] = asyncio.run(_scrape(app))
        yield texts


@pytest.mark.parametrize("service", SERVICES)
def test_metrics_output_passes_promtool_check_metrics(service: str, metrics_text: dict[str, str]) -> None:
    promtool = require_tool("promtool", "bash deploy/prometheus/install.sh")
    text = metrics_text[service]
    assert "# TYPE" in text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"promtool check metrics on {service}'s /metrics:\n{result.stdout}{result.stderr}"


def test_the_deadline_gauge_is_in_seconds_and_has_a_series(metrics_text: dict[str, str]) -> None:
    lines = [ln for ln in metrics_text["submission"].splitlines() if ln.startswith("cld_submission_deadline_")]
    assert lines, "the deadline gauge has no series, so promtool would not check its name"
    assert all(ln.startswith('cld_submission_deadline_remaining_seconds{la_code="318"}') for ln in lines), lines
    assert 0 < float(lines[0].rsplit(" ", 1)[1]) <= 93 * 86400  # deadlines are at most 92 days apart


def test_promtool_catches_a_non_base_unit() -> None:
    """The check is real: the old name fails it."""
    promtool = require_tool("promtool", "bash deploy/prometheus/install.sh")
    old = (
        "# HELP cld_submission_deadline_days_remaining Days.\n"
        "# TYPE cld_submission_deadline_days_remaining gauge\n"
        'cld_submission_deadline_days_remaining{la_code="318"} 3\n'
    )
    result = subprocess.run([promtool, "check", "metrics"], input=old, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "base unit" in result.stdout + result.stderr
