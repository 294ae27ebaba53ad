"""Session fixtures for a real PostgreSQL server (issue 12: the submission service's shared state).

``postgres_server`` yields the URL of the server's ``cld`` database. With ``CLD_TEST_POSTGRES_URL`` set it uses
that server as is; otherwise it runs ``deploy/postgres/postgres.sh start`` on a free port with its run dir under
the repository's ``.run/`` (the server runs as the ``postgres`` user when the tests run as root, and that user
cannot enter pytest's root-only temporary directories) and stops it by PID (``clean``) at the end of the session.

``fresh_database`` gives each test its own database (``CREATE DATABASE``, dropped afterwards) and yields its URL,
so tests never see each other's rows. ``repository_engine`` (parametrised: ``sqlite``, ``postgresql``) is what the
repository contract tests run on: each test runs once per engine.

Use them from a conftest or, in a test module, by assignment (``postgres_server = pg_fixtures.postgres_server``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from cld_submission.adapters.ports import RecordStore, SubmissionsRepository
from cld_submission.adapters.stores import open_record_store, open_repository

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "postgres" / "postgres.sh"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    external = os.environ.get("CLD_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    port = _free_port()
    run_dir = REPO / ".run" / f"test-postgres-{port}"
    env = {**os.environ, "POSTGRES_PORT": str(port), "POSTGRES_RUN_DIR": str(run_dir)}
    started = subprocess.run(
        ["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    try:
        if started.returncode != 0:
            raise RuntimeError(f"postgres.sh start failed:\n{started.stderr[-4000:]}")
        line = started.stdout.strip().splitlines()[-1]
        yield line.partition("=")[2]
    finally:
        subprocess.run(["bash", str(SCRIPT), "clean"], env=env, capture_output=True, timeout=120, check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def fresh_database(postgres_server: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(postgres_server, name)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class RepositoryEngine:
    """One storage engine for the repository contract tests: opens stores and repositories on it."""

    name: str
    state_dir: Path
    database_url: str | None

    def record_store(self) -> RecordStore:
        return open_record_store(self.state_dir, self.database_url)

    def repository(self) -> SubmissionsRepository:
        return open_repository(self.state_dir, self.database_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def repository_engine(request: pytest.FixtureRequest, tmp_path: Path) -> RepositoryEngine:
    """SQLite files in ``tmp_path``, or a fresh database on the session's PostgreSQL server."""
    url = request.getfixturevalue("fresh_database") if request.param == "postgresql" else None
    return RepositoryEngine(str(request.param), tmp_path / "state", url)
