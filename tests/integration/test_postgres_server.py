"""The project's own PostgreSQL (deploy/postgres/postgres.sh): installed and started by the script on a fresh
machine, loopback only, password authentication, a private data directory, stopped by PID (issue 12's base).

The run dir is under the repository's ``.run/`` (the server runs as the ``postgres`` user, who cannot enter
pytest's root-only temporary directories).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration
SCRIPT = REPO / "deploy" / "postgres" / "postgres.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300, check=check
    )


@pytest.fixture
def pg_env() -> Iterator[dict[str, str]]:
    port = _free_port()
    run_dir = REPO / ".run" / f"test-postgres-{port}"
    env = {**os.environ, "POSTGRES_PORT": str(port), "POSTGRES_RUN_DIR": str(run_dir)}
    try:
        yield env
    finally:
        _run(env, "stop", check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    """True while the process runs (a zombie waiting for its reaper counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _psql(env: dict[str, str], url: str, sql: str) -> str:
    psql = next(Path("/usr/lib/postgresql").glob("*/bin/psql"))
    done = subprocess.run(
        [str(psql), "-X", "-q", "-t", "-A", url, "-c", sql], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.strip()


def test_start_serves_loopback_only_with_a_password_and_stop_ends_it_by_pid(pg_env: dict[str, str]) -> None:
    started = _run(pg_env, "start")
    lines = started.stdout.strip().splitlines()
    assert len(lines) == 1, started.stdout
    name, _, url = lines[0].partition("=")
    assert name == "CLD_SUBMISSION_DATABASE_URL"
    assert url.startswith("postgresql://cld:")
    assert f"@127.0.0.1:{pg_env['POSTGRES_PORT']}/cld" in url

    assert _psql(pg_env, url, "select current_user") == "cld"
    assert _psql(pg_env, url, "show listen_addresses") == "127.0.0.1"
    assert _psql(pg_env, url, "show password_encryption") == "scram-sha-256"
    wrong = url.replace("postgresql://cld:", "postgresql://cld:wrong", 1)
    with pytest.raises(subprocess.CalledProcessError):
        _psql(pg_env, wrong, "select 1")

    run_dir = Path(pg_env["POSTGRES_RUN_DIR"])
    for private in (run_dir, run_dir / "data", run_dir / "password"):
        assert stat.S_IMODE(private.stat().st_mode) & 0o077 == 0, private
    pid = int((run_dir / "postgres.pid").read_text())
    assert _alive(pid)
    assert str(run_dir / "data") in Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ")

    again = _run(pg_env, "start")  # idempotent: the same server, the same URL
    assert again.stdout.strip() == lines[0]
    assert _run(pg_env, "status").returncode == 0

    _run(pg_env, "stop")
    assert not _alive(pid)
    assert _run(pg_env, "status", check=False).returncode == 1
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", int(pg_env["POSTGRES_PORT"]))) != 0

    restarted = _run(pg_env, "start")  # the data directory survives a restart
    assert restarted.stdout.strip() == lines[0]
    assert _psql(pg_env, url, "select 1") == "1"
