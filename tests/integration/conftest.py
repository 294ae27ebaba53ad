"""Integration fixtures: a real Kafka broker for the session, a topic prefix per test.

``kafka_bootstrap`` uses ``KAFKA_BOOTSTRAP_SERVERS`` when set; otherwise it starts a broker with
``deploy/kafka/kafka.sh`` on a free port (run dir under pytest's temporary directory) and stops it at the end.
Other integration fixtures (MESH sandbox: ``mesh_fixtures.py``; PostgreSQL and the repository engines:
``pg_fixtures.py``, imported here) live in their own modules.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.pg_fixtures import fresh_database, postgres_server, repository_engine  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"


def _free_port_pair() -> int:
    """A port p with p and p+1 free (client and KRaft controller ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports for a Kafka broker")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    port = _free_port_pair()
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_RUN_DIR": str(tmp_path_factory.mktemp("kafka") / "run"),
    }
    started = subprocess.run(
        ["bash", str(KAFKA_SH), "start"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if started.returncode != 0:
        raise RuntimeError(f"kafka.sh start failed:\n{started.stderr[-4000:]}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "stop"], env=env, capture_output=True, timeout=120, check=False)


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix of this test's own (``t<hex>.``): real-broker tests never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}."
