"""`cld demo` after `make up`: it finds the keys, ports and Kafka address `make up` wrote under .run/local
(issue 13, item 4) without the user copying them, and says clearly what to do when they are absent.

No `make up` here: a temporary run directory laid out as deploy/local/up.sh writes it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cld_cli import cmd_demo
from cld_cli.main import app

SOURCE_KEY = "src-key-for-tests-only"
OPERATOR_KEY = "op-key-for-tests-only"


def _make_up_run_dir(repo: Path) -> Path:
    """What up.sh leaves: .run/local with 0600 key files, <service>.port files and kafka.env."""
    run = repo / ".run" / "local"
    run.mkdir(parents=True)
    for name, body in (
        ("source-keys.json", {cmd_demo.DEFAULT_SOURCE: SOURCE_KEY}),
        ("operator-keys.json", {cmd_demo.DEFAULT_OPERATOR: OPERATOR_KEY, "hub-officer": "other"}),
    ):
        path = run / name
        path.write_text(json.dumps(body), encoding="utf-8")
        path.chmod(0o600)
    (run / "ingest.port").write_text("18001\n", encoding="utf-8")
    (run / "submission.port").write_text("18004\n", encoding="utf-8")
    (run / "kafka.env").write_text("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092\n", encoding="utf-8")
    return run


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The arguments `cld demo` hands to run_demo (the demo itself needs running services)."""
    seen: dict[str, Any] = {}

    async def fake_run_demo(**kwargs: Any) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(cmd_demo, "run_demo", fake_run_demo)
    for var in (
        "CLD_RUN_DIR",
        "CLD_SOURCE_KEYS_FILE",
        "CLD_OPERATOR_KEYS_FILE",
        "CLD_INGEST_URL",
        "CLD_SUBMISSION_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
    ):
        monkeypatch.delenv(var, raising=False)
    return seen


def test_demo_uses_what_make_up_wrote_from_a_subfolder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured: dict[str, Any]
) -> None:
    run = _make_up_run_dir(tmp_path)
    inside = tmp_path / "services" / "cli"
    inside.mkdir(parents=True)
    monkeypatch.chdir(inside)

    result = CliRunner().invoke(app, ["demo"])

    assert result.exit_code == 0, result.output
    assert captured["keys_file"] == run / "source-keys.json"
    assert captured["operator_keys_file"] == run / "operator-keys.json"
    assert captured["ingest_url"] == "http://127.0.0.1:18001"
    assert captured["submission_url"] == "http://127.0.0.1:18004"
    assert captured["bootstrap"] == "127.0.0.1:19092"
    # and those files give the demo the example source's and the LA operator's keys
    assert cmd_demo.source_key(captured["keys_file"], captured["source_id"]) == SOURCE_KEY
    assert cmd_demo.operator_key(captured["operator_keys_file"], captured["operator"]) == OPERATOR_KEY


def test_cld_run_dir_and_explicit_options_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured: dict[str, Any]
) -> None:
    run = _make_up_run_dir(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)  # no .run/local here or above: CLD_RUN_DIR names it
    monkeypatch.setenv("CLD_RUN_DIR", str(run))
    own = tmp_path / "mine.json"
    own.write_text(json.dumps({cmd_demo.DEFAULT_SOURCE: "mine"}), encoding="utf-8")

    result = CliRunner().invoke(app, ["demo", "--keys-file", str(own), "--ingest-url", "http://127.0.0.1:9"])

    assert result.exit_code == 0, result.output
    assert captured["keys_file"] == own
    assert captured["ingest_url"] == "http://127.0.0.1:9"
    assert captured["operator_keys_file"] == run / "operator-keys.json"
    assert captured["bootstrap"] == "127.0.0.1:19092"


def test_without_make_up_the_defaults_are_the_documented_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured: dict[str, Any]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cmd_demo.LocalRun.find(tmp_path, env={}).run_dir is None

    result = CliRunner().invoke(app, ["demo"])

    assert result.exit_code == 0, result.output
    assert captured["keys_file"] is None
    assert captured["operator_keys_file"] is None
    assert captured["ingest_url"] == "http://127.0.0.1:8001"
    assert captured["bootstrap"] == "127.0.0.1:9092"


def test_a_refused_upload_without_a_key_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(401, json={"detail": "unknown_source"})

    real_client = httpx.AsyncClient

    def client(**kwargs: Any) -> httpx.AsyncClient:
        return real_client(transport=httpx.MockTransport(answer), **kwargs)

    monkeypatch.setattr(cmd_demo.httpx, "AsyncClient", client)
    missing = tmp_path / ".run" / "local" / "source-keys.json"
    with pytest.raises(cmd_demo.typer.Exit):
        asyncio.run(
            cmd_demo.run_demo(
                ingest_url="http://ingest.test",
                submission_url=None,
                bootstrap="127.0.0.1:1",
                prefix="",
                people=2,
                seed=1,
                la_code="318",
                wait_seconds=5,
                keys_file=missing,
            )
        )
    assert len(calls) == 1
    assert "authorization" not in calls[0].headers  # no key was found, so none was sent
    hint = cmd_demo.missing_key_hint("source", missing)
    assert "make up" in hint
    assert str(missing) in hint
    assert "--keys-file" in hint


def test_the_upload_carries_the_source_key_make_up_issued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _make_up_run_dir(tmp_path)
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(403, json={"detail": "stop here"})  # the test ends at the upload

    real_client = httpx.AsyncClient
    monkeypatch.setattr(
        cmd_demo.httpx,
        "AsyncClient",
        lambda **kw: real_client(transport=httpx.MockTransport(answer), **kw),
    )
    with pytest.raises(cmd_demo.typer.Exit):
        asyncio.run(
            cmd_demo.run_demo(
                ingest_url="http://ingest.test",
                submission_url=None,
                bootstrap="127.0.0.1:1",
                prefix="",
                people=2,
                seed=1,
                la_code="318",
                wait_seconds=5,
                keys_file=cmd_demo.LocalRun(run).source_keys,
            )
        )
    assert calls[0].headers["authorization"] == f"Bearer {SOURCE_KEY}"


def test_an_unreadable_keys_file_is_a_clear_exit(tmp_path: Path) -> None:
    bad = tmp_path / "source-keys.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(cmd_demo.typer.Exit) as exc:
        cmd_demo.source_key(bad, cmd_demo.DEFAULT_SOURCE)
    assert exc.value.exit_code == 2
