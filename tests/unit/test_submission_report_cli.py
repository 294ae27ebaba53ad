"""`cld submission report ID --out report.html`: the service's report page, written through the shared safe
writer (0600, never through a symlink), with the operator key as a Bearer header; refusals are one clear line."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from cld_cli import cmd_submission

KEY = "cldk_" + "r" * 43
PAGE = b"<!DOCTYPE html><html><body>the report</body></html>"


def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """Test root."""

    cmd_submission.register(root)
    return root


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if "authorization" not in request.headers:
            return httpx.Response(401, json={"detail": "unknown_operator: send a valid operator key"})
        if request.url.path == "/v1/submissions/other-la/report":
            return httpx.Response(403, json={"detail": "out_of_scope: LA 319 is not yours"})
        return httpx.Response(200, content=PAGE, headers={"content-type": "text/html; charset=utf-8"})

    real: Callable[..., httpx.Client] = httpx.Client
    monkeypatch.setattr(httpx, "Client", lambda *a, **kw: real(*a, transport=httpx.MockTransport(handler), **kw))
    monkeypatch.delenv("CLD_OPERATOR_KEY", raising=False)
    return requests


def run(*argv: str, key: bool = True) -> Any:
    return CliRunner().invoke(app(), ["submission", "report", *argv], env={"CLD_OPERATOR_KEY": KEY if key else ""})


def test_report_writes_the_page_privately(seen: list[httpx.Request], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = run("s-1", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == PAGE
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert seen[-1].url.path == "/v1/submissions/s-1/report"
    assert seen[-1].headers["authorization"] == f"Bearer {KEY}"


def test_a_refusal_is_one_clear_line_and_nothing_is_written(seen: list[httpx.Request], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = run("other-la", "--out", str(out))
    assert result.exit_code == 1
    assert "out_of_scope" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    no_key = run("s-1", "--out", str(out), key=False)
    assert no_key.exit_code == 1
    assert "CLD_OPERATOR_KEY" in no_key.output


def test_a_symlink_target_is_refused_before_asking(seen: list[httpx.Request], tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "report.html"
    os.symlink(victim, link)
    result = run("s-1", "--out", str(link))
    assert result.exit_code == 2, result.output
    assert "symbolic link" in " ".join(result.output.split())
    assert victim.read_text() == "keep me"
    assert seen == []  # refused before the service was asked
