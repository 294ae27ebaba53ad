"""`CLD_SUBMISSION_INSTANCES=2 make up` (deploy/local/up.sh) on a real broker and a real PostgreSQL (issue 12).

up.sh starts the project's PostgreSQL (none is configured and N > 1) and two submission instances on
CLD_SUBMISSION_PORT and +10, both healthy and sharing that database (no SQLite files in the state folder); down.sh
stops every process it started by PID, PostgreSQL included. Free ports only; the run dirs are the test's own
(CLD_LOCAL_RUN_DIR in tmp_path; PostgreSQL's under the repository's .run/, as postgres.sh needs when run as root).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import REPO, free_port

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def up_env(kafka_bootstrap: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    pg_port = free_port()
    base = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLD_", "POSTGRES_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        CLD_LOCAL_RUN_DIR=str(tmp_path / "local"),
        CLD_TOPIC_PREFIX=f"up-{base}.",
        CLD_SUBMISSION_STATE_DIR=str(tmp_path / "submission-state"),
        CLD_SUBMISSION_INSTANCES="2",
        CLD_INGEST_PORT=str(free_port()),
        CLD_VALIDATION_PORT=str(free_port()),
        CLD_PSEUDONYMISATION_PORT=str(free_port()),
        CLD_SUBMISSION_PORT=str(base),
        POSTGRES_PORT=str(pg_port),
        CLD_UP_TIMEOUT="180",
    )
    try:
        yield env
    finally:
        subprocess.run(["bash", "deploy/local/down.sh"], cwd=REPO, env=env, capture_output=True, timeout=300)
        shutil.rmtree(REPO / ".run" / f"postgres-{pg_port}", ignore_errors=True)


def test_two_submission_instances_on_the_project_postgresql_and_down_stops_all(up_env: dict[str, str]) -> None:
    second = int(up_env["CLD_SUBMISSION_PORT"]) + 10
    probe = subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{second}"], capture_output=True, check=False)
    if probe.returncode == 0:
        pytest.skip(f"port {second} (the second instance's) is taken on this machine")
    up = subprocess.run(
        ["bash", "deploy/local/up.sh"], cwd=REPO, env=up_env, capture_output=True, text=True, timeout=600
    )
    assert up.returncode == 0, up.stderr[-3000:]
    run = Path(up_env["CLD_LOCAL_RUN_DIR"])
    base = int(up_env["CLD_SUBMISSION_PORT"])
    assert (run / "submission.port").read_text().strip() == str(base)
    assert (run / "submission@2.port").read_text().strip() == str(base + 10)
    for port in (base, base + 10):
        assert httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=10).status_code == 200
    # One PostgreSQL, started by up.sh, its URL given to both (0600), and no SQLite state in the shared folder.
    assert (run / "postgres.started").read_text().strip() == f"POSTGRES_PORT={up_env['POSTGRES_PORT']}"
    url_file = run / "postgres.env"
    assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
    assert f"@127.0.0.1:{up_env['POSTGRES_PORT']}/cld" in url_file.read_text()
    assert not list(Path(up_env["CLD_SUBMISSION_STATE_DIR"]).glob("*.sqlite3"))
    pg_pid = int((REPO / ".run" / f"postgres-{up_env['POSTGRES_PORT']}" / "postgres.pid").read_text())
    pids = [int(p.read_text()) for p in run.glob("*.pid")]
    assert len(pids) == 5  # ingest, validation, pseudonymisation, two submission instances
    assert all(_alive(pid) for pid in [*pids, pg_pid])

    down = subprocess.run(["bash", "deploy/local/down.sh"], cwd=REPO, env=up_env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr[-3000:]
    assert not any(_alive(pid) for pid in [*pids, pg_pid])
    assert not list(run.glob("*.pid"))
    assert not (run / "postgres.started").exists()
