"""Liveness and readiness are separate on every service (issue 10): ``/health/live`` answers 200 whenever the
process runs; ``/health/ready`` (and its alias ``/health``) is 503 naming the broker while the broker is not
connected, and reports the tenants registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cld_ingest.service import IngestSettings
from cld_ingest.service import create_app as ingest_app
from cld_pseudonymisation.service import PseudonymisationSettings
from cld_pseudonymisation.service import create_app as pseudonymisation_app
from cld_submission.entrypoints.app import create_app as submission_app
from cld_submission.entrypoints.settings import SubmissionSettings
from cld_validation.service import ValidationSettings
from cld_validation.service import create_app as validation_app
from tests.support.processes import TEST_PSEUDO_KEY

UNREACHABLE = "127.0.0.1:1"
"""A broker that never answers: the apps are built but their broker is not connected."""


def apps(tmp: Any) -> dict[str, Callable[[], Any]]:
    common: dict[str, Any] = {"kafka_bootstrap_servers": UNREACHABLE, "tenancy_mode": "open", "log_level": "ERROR"}
    return {
        "ingest": lambda: ingest_app(IngestSettings(**common)),
        "validation": lambda: validation_app(ValidationSettings(**common)),
        "pseudonymisation": lambda: pseudonymisation_app(
            PseudonymisationSettings(**common, pseudo_key=TEST_PSEUDO_KEY)
        ),
        "submission": lambda: submission_app(SubmissionSettings(**common, state_dir=tmp / "state")),
    }


@pytest.mark.parametrize("name", ["ingest", "validation", "pseudonymisation", "submission"])
async def test_live_is_200_and_ready_names_the_disconnected_broker(name: str, tmp_path: Any) -> None:
    app = apps(tmp_path)[name]()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        live = await client.get("/health/live")
        assert live.status_code == 200
        assert live.json() == {"status": "alive", "service": name}
        for path in ("/health/ready", "/health"):
            ready = await client.get(path)
            body = ready.json()
            assert ready.status_code == 503, (path, body)
            assert body["broker"] == "disconnected"
            assert "broker" in body["failing"]
            assert body["tenants"] == "open"
            assert body["consumers"] == "progressing"
