"""Storage faults mid-stream on a real broker (issue 10, finding 3): the submission state heals by itself.

A real submission process (``cld serve submission``) keeps its state directory on a small tmpfs of its own. Records
are published to the validated topic in three parts; between them the storage is taken away and given back:

(a) full disk: the tmpfs is filled with a ballast file while records are being consumed;
(b) read-only remount: the tmpfs is remounted read-only, then writable again.

While it cannot store, the service must say so (``/health/ready`` 503 naming the state store) and commit nothing;
once storage returns it must catch up by itself (no restart): every record sent is in the state exactly once
(nothing lost, nothing doubled), and the consumer group has committed to the end of the topic.

The kernel refuses to remount a file system read-only while a process holds a file on it open for writing
(EBUSY), which a running SQLite always does. So (b) first takes the space away (the service then closes its
database files: ``storage.ReopeningConnection``), remounts read-only as soon as the kernel allows it, checks that
the service stays not ready while the file system is read-only, then remounts it writable and gives the space
back. Needs root (``mount``); skipped with the reason when mounting is refused.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cld_schemas import topics
from tests.component.test_submission_storage_failures import a_validated
from tests.support.builders import LA_CODE
from tests.support.processes import ServiceProcess, produce, service_env
from tests.support.waits import wait_until as _wait_until

pytestmark = pytest.mark.integration

PERIOD = {"period_start": "2024-04-01", "period_end": "2025-03-31"}
"""The reporting period in which ``a_validated``'s records are in scope."""
PART = 600
"""Records per part (three parts: before, during and after each fault)."""
WAIT = 120.0
"""Upper bound of every wait (a bound, not a delay: each wait ends as soon as its condition holds)."""
TMPFS_SIZE = "48m"


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of its own (unmounted in teardown, whatever happened)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = _mount("-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(mnt))
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs was refused (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        _mount("-o", "remount,rw", str(mnt))
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30, check=False)


wait_for = partial(_wait_until, seconds=WAIT)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` with a ballast file (until ENOSPC, down to the last 4 KiB)."""
    ballast = folder / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 1 << 12):
            block = b"\0" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return ballast


class Service:
    def __init__(self, proc: ServiceProcess) -> None:
        self.proc = proc

    async def ready(self) -> tuple[int, dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(self.proc.url + "/health/ready")
            return r.status_code, r.json()

    async def live(self) -> int:
        async with httpx.AsyncClient(timeout=10) as client:
            return (await client.get(self.proc.url + "/health/live")).status_code

    async def in_scope(self) -> int:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(self.proc.url + f"/v1/state/{LA_CODE}", params=PERIOD)
            return int(r.json()["in_scope"]) if r.status_code == 200 else -1

    async def not_ready(self) -> dict[str, Any] | None:
        code, body = await self.ready()
        return body if code == 503 else None

    async def is_ready(self) -> bool:
        return (await self.ready())[0] == 200


async def committed_to_end(bootstrap: str, topic: str, group: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        parts = [
            TopicPartition(topic, p["partition"])
            for t in await admin.describe_topics([topic])
            if t.get("error_code", 0) == 0
            for p in t.get("partitions", ())
        ]
        ends = await consumer.end_offsets(parts)
        offsets = await admin.list_consumer_group_offsets(group, partitions=parts)
        return all((offsets[tp].offset if tp in offsets else -1) >= end for tp, end in ends.items())
    finally:
        await consumer.stop()
        await admin.close()


def records(part: int) -> list[tuple[bytes | None, bytes, dict[str, str]]]:
    return [(LA_CODE.encode(), a_validated(f"ev-{part}-{i}", f"R{part}-{i}"), {}) for i in range(PART)]


def held_records(state_dir: Path) -> tuple[int, int, set[str]]:
    """(rows, distinct event ids, event ids) of the record state, read after the service stopped."""
    with closing(sqlite3.connect(f"file:{state_dir / 'records.sqlite3'}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM records WHERE withdrawn = 0").fetchone()
        ids = {r[0] for r in conn.execute("SELECT event_id FROM records")}
    return int(rows[0]), int(rows[1]), ids


async def run_faults(kafka_bootstrap: str, topic_prefix: str, tmpfs: Path, tmp_path: Path, kind: str) -> None:
    state_dir = tmpfs / "state"
    topic = topic_prefix + topics.VALIDATED
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    group = f"cld-submission-{topic_prefix.strip('.')}"
    env = service_env(
        kafka_bootstrap,
        topic_prefix,
        CLD_SUBMISSION_STATE_DIR=str(state_dir),
        CLD_GROUP_ID=group,
        CLD_GAUGE_INTERVAL_SECONDS="3600",  # no periodic reads holding the database open during the test
        CLD_CONSUMER_MAX_RECORDS="100",
    )
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    proc = ServiceProcess("submission", env, log_dir).start()
    svc = Service(proc)
    try:
        proc.wait_healthy(timeout=WAIT)
        sent = 0

        # Part 1: storage is fine.
        sent += await produce(kafka_bootstrap, topic, records(1))
        await wait_for(lambda: _equals(svc.in_scope(), sent), what="part 1 stored")

        # The fault, then part 2 while it lasts.
        ballast = fill(tmpfs)
        sent += await produce(kafka_bootstrap, topic, records(2))
        body = await wait_for(svc.not_ready, what="not ready while the disk is full")
        assert body["state_store"] == "unavailable", body
        assert "state_store" in body["failing"], body
        assert await svc.live() == 200  # alive: a restart is not what helps
        assert not await committed_to_end(kafka_bootstrap, topic, group)  # the failing batches are not committed

        if kind == "read-only":
            # The kernel remounts read-only only once no file is open for writing: the service let go of its
            # database files after the fault (EBUSY until then).
            async def remounted() -> bool:
                return _mount("-o", "remount,ro", str(tmpfs)).returncode == 0

            try:
                await wait_for(remounted, what="remount read-only (the service must close its files)")
            except TimeoutError:
                assert proc.proc is not None
                fds = sorted(
                    os.readlink(f"/proc/{proc.proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proc.proc.pid}/fd")
                )
                raise AssertionError(f"open files: {[f for f in fds if str(tmpfs) in f]}") from None
            body = await wait_for(
                lambda: _cause(svc, ("read-only", "READONLY", "CANTOPEN")), what="not ready while read-only"
            )
            assert body["state_store"] == "unavailable", body
            assert not await committed_to_end(kafka_bootstrap, topic, group)
            done = _mount("-o", "remount,rw", str(tmpfs))
            assert done.returncode == 0, done.stderr
            assert await svc.not_ready() is not None  # still full: still not ready

        # Storage returns: the service recovers by itself (no restart).
        ballast.unlink()
        await wait_for(svc.is_ready, what="ready again after storage returned")
        await wait_for(lambda: _equals(svc.in_scope(), sent), what="part 2 caught up")

        # Part 3: storing as usual.
        sent += await produce(kafka_bootstrap, topic, records(3))
        await wait_for(lambda: _equals(svc.in_scope(), sent), what="part 3 stored")

        async def drained() -> bool:
            return await committed_to_end(kafka_bootstrap, topic, group)

        await wait_for(drained, what="offsets committed to the end of the topic")
        assert proc.proc is not None
        assert proc.proc.poll() is None  # it never exited
    finally:
        proc.stop()

    rows, distinct, ids = held_records(state_dir)
    expected = {f"ev-{part}-{i}" for part in (1, 2, 3) for i in range(PART)}
    assert ids == expected  # nothing lost, nothing else
    assert rows == distinct == len(expected) == sent  # nothing doubled
    log = "".join(p.read_text(errors="replace") for p in log_dir.iterdir())
    assert "state storage unavailable" in log
    assert "state storage recovered" in log
    assert "cannot rollback" not in log  # the real cause is logged, not a failed ROLLBACK's


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def _cause(svc: Service, words: tuple[str, ...]) -> dict[str, Any] | None:
    body = await svc.not_ready()
    if body is not None and any(w in str(body.get("state_store_cause")) for w in words):
        return body
    return None


async def test_full_disk_mid_stream_heals_by_itself(
    kafka_bootstrap: str, topic_prefix: str, tmpfs: Path, tmp_path: Path
) -> None:
    await run_faults(kafka_bootstrap, topic_prefix, tmpfs, tmp_path, "full")


async def test_read_only_remount_mid_stream_heals_by_itself(
    kafka_bootstrap: str, topic_prefix: str, tmpfs: Path, tmp_path: Path
) -> None:
    await run_faults(kafka_bootstrap, topic_prefix, tmpfs, tmp_path, "read-only")


def test_a_read_only_state_directory_at_start_is_one_clear_line_and_a_non_zero_exit(
    tmpfs: Path, tmp_path: Path
) -> None:
    state_dir = tmpfs / "state"
    state_dir.mkdir()
    done = _mount("-o", "remount,ro", str(tmpfs))
    assert done.returncode == 0, done.stderr
    env = service_env("127.0.0.1:1", "t.", CLD_SUBMISSION_STATE_DIR=str(state_dir))
    result = subprocess.run(
        [str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "cld"), "serve", "submission", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(errors) == 1, result.stderr
    assert str(state_dir) in errors[0]
    assert "read-only" in errors[0]
    assert os.listdir(state_dir) == []
