"""Session fixtures for a local MESH sandbox.

``mesh_sandbox`` yields the sandbox base URL. With ``MESH_URL`` set it uses that sandbox as is; otherwise
it runs ``deploy/mesh/mesh-sandbox.sh start`` on a free port with a fresh store under pytest's temporary
directory and removes it (``clean``: stop by PID, then delete the run dir) at the end of the session.

``mesh_sandbox_control`` (optional) gives ``stop()``/``start()`` for outage tests; it is only usable when
this session started the sandbox (``control.managed``), so such tests skip against an external one.

Use them from a conftest (``from tests.integration.mesh_fixtures import mesh_sandbox  # noqa: F401``) or,
in a test module, by assignment (``mesh_sandbox = mesh_fixtures.mesh_sandbox``) to keep ruff's F811 quiet.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "mesh" / "mesh-sandbox.sh"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MeshSandboxControl:
    url: str
    managed: bool
    env: dict[str, str]

    def _run(self, command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self) -> None:
        if not self.managed:
            raise RuntimeError("this MESH sandbox was not started by the test session")
        result = self._run("start")
        if result.returncode != 0:
            raise RuntimeError(f"mesh-sandbox.sh start failed:\n{result.stdout}\n{result.stderr}")

    def stop(self) -> None:
        if not self.managed:
            raise RuntimeError("this MESH sandbox was not started by the test session")
        result = self._run("stop")
        if result.returncode != 0:
            raise RuntimeError(f"mesh-sandbox.sh stop failed:\n{result.stdout}\n{result.stderr}")

    def clean(self) -> None:
        if self.managed:
            self._run("clean")


_CONTROL_KEY = pytest.StashKey[MeshSandboxControl]()


@pytest.fixture(scope="session")
def mesh_sandbox(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("MESH_URL")
    if external:
        request.config.stash[_CONTROL_KEY] = MeshSandboxControl(external.rstrip("/"), False, dict(os.environ))
        yield external.rstrip("/")
        return

    port = _free_port()
    store = tmp_path_factory.mktemp("mesh-store")
    env = dict(os.environ, MESH_PORT=str(port), MESH_STORE_DIR=str(store))
    control = MeshSandboxControl(f"http://127.0.0.1:{port}", True, env)
    try:
        control.start()
    except RuntimeError as exc:
        control.clean()
        pytest.fail(str(exc))
    request.config.stash[_CONTROL_KEY] = control
    try:
        yield control.url
    finally:
        control.clean()


@pytest.fixture
def mesh_sandbox_control(mesh_sandbox: str, request: pytest.FixtureRequest) -> MeshSandboxControl:
    control = request.config.stash[_CONTROL_KEY]
    if not control.managed:
        pytest.skip("MESH_URL points at an external sandbox; cannot stop/start it")
    return control
