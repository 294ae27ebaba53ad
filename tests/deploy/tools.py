"""Shared helpers for the deploy tier: repository paths, the metrics contract, tool discovery."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
TEAM_MD = REPO / "docs" / "TEAM.md"
OPERATIONS_MD = REPO / "docs" / "operations.md"

TOPICS = (
    "cld.events.raw.v1",
    "cld.records.validated.v1",
    "cld.records.pseudonymised.v1",
    "cld.submissions.v1",
    "cld.deadletter.v1",
)
SERVICES = {"ingest": 8001, "validation": 8002, "pseudonymisation": 8003, "submission": 8004}
CONSUMER_GROUPS = {
    "validation": "cld-validation",
    "pseudonymisation": "cld-pseudonymisation",
    "submission": "cld-submission",
}

_CONTRACT_ROW = re.compile(r"^\|\s*`?([a-z_:][a-z0-9_:]*)`?\s*\|\s*(counter|gauge|histogram|summary)\s*\|")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_tool(name: str, install_hint: str) -> str:
    """Path of ``name``; skip when it is missing locally, fail when it is missing under CI."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not found on PATH (install it with: {install_hint})"
    if in_ci():
        pytest.fail(f"{message}; under CI the Makefile must install it first")
    pytest.skip(message)


def contract_metrics(team_md: Path = TEAM_MD) -> dict[str, str]:
    """Metric name -> type, parsed from the METRICS CONTRACT table in docs/TEAM.md."""
    metrics: dict[str, str] = {}
    in_contract = False
    for line in team_md.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            in_contract = "metrics contract" in line.lower()
            continue
        if in_contract:
            match = _CONTRACT_ROW.match(line)
            if match:
                metrics[match.group(1)] = match.group(2)
    return metrics


def run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a command; on failure, fail the test with its output."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result.stdout + result.stderr
