"""The submission service's OpenAPI document says what the API enforces (issue 12 item 6): an operator security
scheme (FastAPI's ``HTTPBearer``) on every ``/v1`` operation, and the 401/403/404/409 answers each route can give.

Read from ``app.openapi()`` of the real composition root; no broker is reached (nothing is started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from cld_governance.tenancy import Registry, open_registry
from cld_submission.entrypoints.app import create_app
from cld_submission.entrypoints.settings import SubmissionSettings

# Every /v1 operation and the error statuses it documents (derived from what each route raises).
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("post", "/v1/submissions"): {"401", "403", "409"},
    ("get", "/v1/submissions"): {"401", "403"},
    ("get", "/v1/submissions/{submission_id}"): {"401", "403", "404"},
    ("get", "/v1/submissions/{submission_id}/report"): {"401", "403", "404"},
    ("get", "/v1/submissions/{submission_id}/status"): {"401", "403", "404"},
    ("post", "/v1/submissions/{submission_id}/approve"): {"401", "403", "404", "409"},
    ("post", "/v1/submissions/{submission_id}/exports"): {"401", "403", "404", "409"},
    ("get", "/v1/state/{la_code}"): {"401", "403"},
    ("get", "/v1/submissions/{submission_id}/file"): {"401", "403", "404", "410"},
}


def _app(tmp: Path, tenants: Registry | None = None) -> Any:
    settings = SubmissionSettings(
        kafka_bootstrap_servers="127.0.0.1:1", state_dir=tmp / "state", export_dir=tmp / "export"
    )
    return create_app(settings, tenants=tenants if tenants is not None else Registry())


@pytest.fixture
def openapi(tmp_path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = _app(tmp_path).openapi()
    return doc


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_the_operator_key_is_a_declared_bearer_scheme(openapi: dict[str, Any]) -> None:
    schemes = openapi["components"]["securitySchemes"]
    assert schemes == {
        "OperatorKey": {"type": "http", "scheme": "bearer", "description": schemes["OperatorKey"]["description"]}
    }
    assert "Authorization: Bearer" in schemes["OperatorKey"]["description"]


def test_every_v1_operation_requires_the_operator_key(openapi: dict[str, Any]) -> None:
    v1 = {k: op for k, op in _operations(openapi).items() if k[1].startswith("/v1/")}
    assert set(v1) == set(EXPECTED)  # a new route must be added here, with its documented answers
    for key, op in v1.items():
        assert op.get("security") == [{"OperatorKey": []}], key


def test_health_and_metrics_need_no_key(openapi: dict[str, Any]) -> None:
    for key, op in _operations(openapi).items():
        if not key[1].startswith("/v1/"):
            assert "security" not in op, key


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
def test_each_route_documents_its_error_answers(openapi: dict[str, Any], method: str, path: str) -> None:
    responses = openapi["paths"][path][method]["responses"]
    errors = {status for status in responses if status.startswith("4") and status != "422"}
    assert errors == EXPECTED[(method, path)]
    for status in errors:
        assert set(responses[status]["content"]) == {"application/json"}, (path, status)  # errors are JSON
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema["required"] == ["detail"], (path, status)
        assert schema["properties"]["detail"]["type"] == "string", (path, status)
        assert responses[status]["description"], (path, status)


async def test_the_documented_401_is_what_a_call_without_a_key_gets(tmp_path: Path) -> None:
    app = _app(tmp_path)  # an empty registry: no key is valid
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://submission") as client:
        for method, path in sorted(EXPECTED):
            url = path.replace("{submission_id}", "0" * 8).replace("{la_code}", "123")
            params = {"period_start": "2025-04-01", "period_end": "2026-03-31"} if "state" in path else None
            resp = await client.request(method.upper(), url, json={}, params=params)
            assert resp.status_code == 401, (method, path, resp.text)
            assert resp.headers["www-authenticate"] == 'Bearer realm="cld-submission"'
            assert set(resp.json()) == {"detail"}


async def test_open_mode_still_documents_the_scheme_and_needs_no_key(tmp_path: Path) -> None:
    app = _app(tmp_path, open_registry())
    assert "OperatorKey" in app.openapi()["components"]["securitySchemes"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://submission") as client:
        assert (await client.get("/v1/submissions")).status_code == 200
