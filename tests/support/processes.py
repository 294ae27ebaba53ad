"""Real service processes (``cld serve <name>``) for integration tests and the bench, plus Kafka helpers.

Each process gets its own free HTTP port and the caller's environment (bootstrap servers, topic prefix).
Waits are bounded polls on observable state (/health, records seen), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[2]
CLD = REPO / ".venv" / "bin" / "cld"
TEST_PSEUDO_KEY = "33" * 32


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    name: str
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        log = (self.log_dir / f"{self.name}-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            [str(CLD), "serve", self.name, "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log.close()
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_dir}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling interval of a bounded wait, not synchronisation
        raise TimeoutError(f"{self.name} not healthy within {timeout} s; see {self.log_dir}")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, no final commit (the crash the at-least-once design must survive)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def service_env(bootstrap: str, prefix: str, *, tenants_file: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a service process. With ``tenants_file`` the registry is enforced; without one the
    processes run in explicit open mode (``CLD_TENANCY_MODE=open``: any source for any LA), which tests that
    are not about tenancy rely on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLD_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLD_TOPIC_PREFIX": prefix,
            "CLD_PSEUDO_KEY": TEST_PSEUDO_KEY,
            "CLD_LOG_LEVEL": "INFO",
            "CLD_CONSUMER_LAG_INTERVAL_SECONDS": "2",
        }
    )
    if tenants_file is not None:
        env["CLD_TENANTS_FILE"] = str(tenants_file)
    else:
        env["CLD_TENANCY_MODE"] = "open"
    env.update(extra)
    return env


async def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes, dict[str, str]]]) -> int:
    """Publish (key, value, headers) messages with a plain aiokafka producer; returns the count."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    n = 0
    try:
        futures = []
        for key, value, headers in messages:
            futures.append(
                await producer.send(topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])
            )
            n += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


async def collect(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    wait_seconds: float = 60.0,
    on_progress: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the start (JSON values) until ``until(seen)`` (TimeoutError after ``wait_seconds``)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(wait_seconds):
            while not until(seen):
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    seen.extend(json.loads(r.value) for r in records if r.value)
                if on_progress is not None:
                    on_progress(seen)
    finally:
        await consumer.stop()
    return seen


def event_ids(events: Iterable[dict[str, Any]]) -> set[str]:
    return {e["provenance"]["event_id"] for e in events}
