"""`cld submission`: the operator key travels as a Bearer header (env or key file, never argv); export-to."""

from __future__ import annotations

import hashlib
import json
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
from tests.unit.test_safe_files import device_node

KEY = "cldk_" + "k" * 43
SUB = {"submission_id": "s-1", "state": "checked", "rows": 3, "version": 1, "file_sha256": None}


def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """Test root."""

    cmd_submission.register(root)
    return root


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Every request the CLI makes, answered by a fake service."""
    requests: list[httpx.Request] = []
    body = b"a,b\r\n1,2\r\n"

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if "authorization" not in request.headers:
            return httpx.Response(401, json={"detail": "unknown_operator: send a valid operator key"})
        if request.url.path.endswith("/exports"):
            return httpx.Response(
                200,
                content=body,
                headers={
                    "X-Content-SHA256": hashlib.sha256(body).hexdigest(),
                    "X-Records-Included": "1",
                    "X-Records-Considered": "2",
                    "X-Records-Excluded-Opt-Out": "1",
                    "X-Export-Form": "pseudonymised",
                },
            )
        if request.url.path == "/v1/submissions":
            return httpx.Response(201, json={"submission": SUB, "created": True})
        return httpx.Response(200, json=SUB)

    real: Callable[..., httpx.Client] = httpx.Client

    def client(*args: Any, **kwargs: Any) -> httpx.Client:
        return real(*args, transport=httpx.MockTransport(handler), **kwargs)

    monkeypatch.setattr(httpx, "Client", client)
    monkeypatch.delenv("CLD_OPERATOR_KEY", raising=False)
    return requests


def test_the_key_comes_from_the_environment(seen: list[httpx.Request]) -> None:
    result = CliRunner().invoke(app(), ["submission", "status", "s-1"], env={"CLD_OPERATOR_KEY": KEY})
    assert result.exit_code == 0, result.output
    assert seen[-1].headers["authorization"] == f"Bearer {KEY}"


def test_the_key_comes_from_a_key_file_and_request_names_nobody(seen: list[httpx.Request], tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    result = CliRunner().invoke(
        app(),
        ["submission", "request", "--la", "318", "--period", "2024-04-01:2025-03-31", "--key-file", str(key_file)],
    )
    assert result.exit_code == 0, result.output
    assert seen[-1].headers["authorization"] == f"Bearer {KEY}"
    assert b"requested_by" not in seen[-1].content  # the service records the authenticated operator


def test_without_a_key_the_service_says_401_and_the_cli_says_how(seen: list[httpx.Request]) -> None:
    result = CliRunner().invoke(app(), ["submission", "status", "s-1"])
    assert result.exit_code == 1
    assert "CLD_OPERATOR_KEY" in result.output


def test_export_to_writes_a_private_file_and_checks_its_hash(seen: list[httpx.Request], tmp_path: Path) -> None:
    out = tmp_path / "icb.csv"
    result = CliRunner().invoke(
        app(),
        ["submission", "export-to", "s-1", "--recipient", "test-icb", "--out", str(out)],
        env={"CLD_OPERATOR_KEY": KEY},
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == b"a,b\r\n1,2\r\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert seen[-1].url.path == "/v1/submissions/s-1/exports"
    assert b'"recipient":"test-icb"' in seen[-1].content.replace(b" ", b"")


def test_no_command_takes_a_key_on_the_command_line() -> None:
    command = typer.main.get_command(app())
    for sub in command.commands["submission"].commands.values():  # type: ignore[attr-defined]
        assert not {p.name for p in sub.params} & {"key", "operator_key", "token"}


# -- `cld submission export --out` writes safely (issue 10, finding 5) ------------------------------------


def export_to_path(out: Path) -> Any:
    return CliRunner().invoke(app(), ["submission", "export", "s-1", "--out", str(out)], env={"CLD_OPERATOR_KEY": KEY})


def assert_clean_refusal(result: Any, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    for w in words:
        assert w in text, text


def test_export_writes_a_private_file(seen: list[httpx.Request], tmp_path: Path) -> None:
    out = tmp_path / "sub.csv"
    result = export_to_path(out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_bytes()) == SUB
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv"]


def test_export_does_not_follow_a_planted_part_symlink(seen: list[httpx.Request], tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / ".sub.csv.part").symlink_to(victim)
    result = export_to_path(tmp_path / "sub.csv")
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious"
    assert (tmp_path / "sub.csv").is_file()
    assert not (tmp_path / "sub.csv").is_symlink()


def test_export_refuses_a_symlink_target(seen: list[httpx.Request], tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "sub.csv").symlink_to(victim)
    assert_clean_refusal(export_to_path(tmp_path / "sub.csv"), "symbolic link")
    assert victim.read_text() == "precious"
    assert (tmp_path / "sub.csv").is_symlink()


def test_export_refuses_a_fifo(seen: list[httpx.Request], tmp_path: Path) -> None:
    fifo = tmp_path / "sub.csv"
    os.mkfifo(fifo)
    assert_clean_refusal(export_to_path(fifo), "not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_export_refuses_a_device_node(seen: list[httpx.Request], tmp_path: Path) -> None:
    node = device_node(tmp_path)  # our own node: a broken writer running as root must not replace /dev/null
    assert_clean_refusal(export_to_path(node), "not a regular file")
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_export_to_a_directory_is_a_clear_error(seen: list[httpx.Request], tmp_path: Path) -> None:
    assert_clean_refusal(export_to_path(tmp_path), "it is a folder")


def test_export_to_a_missing_folder_is_a_clear_error(seen: list[httpx.Request], tmp_path: Path) -> None:
    assert_clean_refusal(export_to_path(tmp_path / "missing" / "sub.csv"), "folder does not exist")


def test_export_to_an_unwritable_place_is_a_clear_error(seen: list[httpx.Request]) -> None:
    assert_clean_refusal(export_to_path(Path("/proc/cld-test-sub.csv")), "cannot write /proc/cld-test-sub.csv")


def test_status_shows_the_last_transport_error_and_the_next_retry(
    seen: list[httpx.Request], monkeypatch: pytest.MonkeyPatch
) -> None:
    problem = {
        "error": "upload: MeshHttpError (HTTP 503)",
        "at": "2026-12-03T13:00:00Z",
        "next_retry_at": "2026-12-03T13:00:30Z",
        "attempts": 3,
    }
    monkeypatch.setitem(SUB, "delivery_problem", problem)
    monkeypatch.setitem(SUB, "state", "approved")
    result = CliRunner().invoke(app(), ["submission", "status", "s-1"], env={"CLD_OPERATOR_KEY": KEY, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "last transport error" in result.output
    assert "upload: MeshHttpError (HTTP 503)" in result.output
    assert "next retry" in result.output
    assert "2026-12-03T13:00:30Z" in result.output
