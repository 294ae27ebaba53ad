"""Every CLI write goes through cld_runtime.files (issue 10, finding 5): a planted symlink, a FIFO, a folder, a
missing folder or an unwritable place is one clear error line and exit 2, never a traceback, never a followed
link; what is written is 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cld_cli.main import app
from tests.unit.test_preview_cli import _csv, _key

Target = Callable[[Path], Path]
EXAMPLE_TENANTS = Path(__file__).resolve().parents[2] / "deploy" / "config" / "tenants.example.json"


def _generate_in(tmp: Path) -> Path:
    src = tmp / "in.csv"
    result = CliRunner().invoke(app, ["generate", "--out", str(src), "--people", "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    return src


def commands(tmp: Path) -> dict[str, Callable[[Path], list[str]]]:
    """Each CLI write, as argv given the path to write."""
    src = _generate_in(tmp)
    preview_src = _csv(tmp / "preview.csv")
    key = _key(tmp)
    return {
        "validate --json": lambda p: ["validate", str(src), "--json", str(p), "--no-progress"],
        "generate --out": lambda p: ["generate", "--out", str(p), "--people", "2", "--no-progress"],
        "generate --truth": lambda p: [
            "generate",
            "--out",
            str(tmp / "g.csv"),
            "--people",
            "2",
            "--error-rate",
            "0.5",
            "--truth",
            str(p),
            "--no-progress",
        ],
        "spec codelists --out": lambda p: ["spec", "codelists", "--out", str(p)],
        "transparency --out": lambda p: ["transparency", "--la", "318", "--la-name", "Test LA", "--out", str(p)],
        "asyncapi --out": lambda p: ["asyncapi", "--out", str(p)],
        # preview --out is a folder: its pseudonymised.csv is the file written
        "preview --out": lambda p: ["preview", str(preview_src), "--key-file", str(key), "--out", str(p.parent)],
    }


NAMES = [
    "validate --json",
    "generate --out",
    "generate --truth",
    "spec codelists --out",
    "transparency --out",
    "asyncapi --out",
    "preview --out",
]


def _target(tmp: Path, name: str) -> Path:
    folder = tmp / "outdir"
    folder.mkdir(exist_ok=True)
    if name == "preview --out":
        return folder / "pseudonymised.csv"
    return folder / ("truth.json" if name == "generate --truth" else "out.file")


def _run(argv: list[str]) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, argv)
    return result.exit_code, result.output, result.exception


def _refused(code: int, output: str, exc: BaseException | None, *words: str) -> None:
    assert code == 2, output
    assert exc is None or isinstance(exc, SystemExit), repr(exc)
    assert "Traceback" not in output
    text = " ".join(output.split())
    for w in words:
        assert w in text, text


@pytest.mark.parametrize("name", NAMES)
def test_the_file_is_written_0600(tmp_path: Path, name: str) -> None:
    cmds = commands(tmp_path)
    target = _target(tmp_path, name)
    code, output, _ = _run(cmds[name](target))
    assert code in (0, 1), output  # validate exits 1 when rows fail
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("name", NAMES)
def test_a_symlink_target_is_refused_and_not_followed(tmp_path: Path, name: str) -> None:
    cmds = commands(tmp_path)
    target = _target(tmp_path, name)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target.symlink_to(victim)
    _refused(*_run(cmds[name](target)), "symbolic link")
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("name", NAMES)
def test_a_fifo_target_is_refused(tmp_path: Path, name: str) -> None:
    cmds = commands(tmp_path)
    target = _target(tmp_path, name)
    os.mkfifo(target)
    _refused(*_run(cmds[name](target)), "not a regular file")
    assert stat.S_ISFIFO(os.lstat(target).st_mode)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "preview --out"])
def test_a_folder_target_is_a_clear_error(tmp_path: Path, name: str) -> None:
    cmds = commands(tmp_path)
    target = _target(tmp_path, name)
    target.mkdir()
    _refused(*_run(cmds[name](target)), "it is a folder")


@pytest.mark.parametrize("name", [n for n in NAMES if n != "preview --out"])
def test_a_missing_folder_is_a_clear_error(tmp_path: Path, name: str) -> None:
    cmds = commands(tmp_path)
    _refused(*_run(cmds[name](tmp_path / "missing" / "out.json")), "the folder does not exist")


@pytest.mark.parametrize("name", [n for n in NAMES if n != "preview --out"])
def test_an_unwritable_place_is_a_clear_error(tmp_path: Path, name: str) -> None:
    cmds = commands(tmp_path)
    _refused(*_run(cmds[name](Path("/proc/cld-test-out.json"))), "cannot write /proc/cld-test-out.json")


def test_tenants_keys_are_not_written_through_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    keys = tmp_path / "keys.json"
    keys.symlink_to(victim)
    result = CliRunner().invoke(
        app,
        [
            "tenants",
            "init",
            "--registry",
            str(tmp_path / "tenants.json"),
            "--from",
            str(EXAMPLE_TENANTS),
            "--keys-out",
            str(keys),
            "--force",
        ],
    )
    _refused(result.exit_code, result.output, result.exception, "symbolic link")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "tenants.json").exists()  # refused before any key was issued
