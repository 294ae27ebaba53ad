"""Storage faults and readiness: the cause is logged once per change, recovery once; readiness follows."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from cld_runtime.http import ConsumerProgress, Readiness
from cld_submission.adapters.storage import ReopeningConnection, StorageHealth, fault_cause, is_storage_fault


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cause_is_logged_once_per_change_and_recovery_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    released: list[int] = []
    health = StorageHealth(tmp_path, log=logging.getLogger("cld.test"), on_fault=lambda: released.append(1))
    full = sqlite3.OperationalError("database or disk is full")
    with caplog.at_level(logging.WARNING, logger="cld.test"):
        for _ in range(50):
            health.failed(full)
        health.failed(OSError(30, "Read-only file system"))
        health.failed(OSError(30, "Read-only file system"))
        assert health.check()[0] is False
        health.ok()
        health.ok()
    messages = [(r.levelname, r.getMessage(), getattr(r, "cause", None)) for r in caplog.records]
    assert [m[0] for m in messages] == ["ERROR", "ERROR", "WARNING"]
    assert "disk is full" in str(messages[0][2])
    assert messages[1][2] == "read-only file system"
    assert "recovered" in messages[2][1]
    assert caplog.records[2].failed_attempts == 52  # type: ignore[attr-defined]
    assert len(released) == 52  # the files are let go after every fault
    assert health.check() == (True, {"state_store": "writable"})


async def test_the_backoff_grows_and_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("cld_submission.adapters.storage.asyncio.sleep", sleep)
    health = StorageHealth(tmp_path, log=logging.getLogger("cld.test"), min_delay=0.2, max_delay=5.0)
    for _ in range(8):
        health.failed(sqlite3.OperationalError("disk I/O error"))
        await health.backoff()
    assert waits[:5] == [0.2, 0.4, 0.8, 1.6, 3.2]
    assert waits[5:] == [5.0, 5.0, 5.0]


def test_storage_faults_are_told_from_record_errors() -> None:
    assert is_storage_fault(sqlite3.OperationalError("database or disk is full"))
    assert is_storage_fault(OSError(28, "No space left on device"))
    assert not is_storage_fault(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert not is_storage_fault(ValueError("cannot key"))
    assert fault_cause(OSError(28, "No space left on device")) == "no space left on the device"


def test_a_reopening_connection_drops_on_a_fault_and_reopens(tmp_path: Path) -> None:
    opened: list[sqlite3.Connection] = []

    def opener() -> sqlite3.Connection:
        conn = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
        opened.append(conn)
        return conn

    db = ReopeningConnection(opener)
    cur = db.get().cursor()
    cur.execute("BEGIN IMMEDIATE")
    db.failed(sqlite3.IntegrityError("record's own"), cur)
    assert db.is_open  # a record's error keeps the connection (rolled back)
    assert not db.get().in_transaction
    db.failed(sqlite3.OperationalError("disk I/O error"))
    assert not db.is_open
    db.get().execute("SELECT 1")
    assert len(opened) == 2


async def test_consumer_progress_is_not_ready_after_failing_for_the_stall_time() -> None:
    clock = Clock()
    progress = ConsumerProgress(stall_seconds=60, clock=clock)
    readiness = Readiness(progress=progress)
    assert (await readiness.evaluate())[0] is True
    progress.failed()
    clock.now += 59
    assert (await readiness.evaluate())[0] is True  # a short failure streak is not a stall
    progress.failed()
    clock.now += 2
    ready, body, failing = await readiness.evaluate()
    assert ready is False
    assert failing == ["consumers"]
    assert body["consumers"] == "stuck"
    assert body["consumer_failed_batches"] == 2
    progress.handled()
    assert (await readiness.evaluate())[0] is True


async def test_a_broken_check_is_a_failing_check() -> None:
    readiness = Readiness()

    def broken() -> tuple[bool, dict[str, object]]:
        raise RuntimeError("boom")

    readiness.add("thing", broken)
    ready, body, failing = await readiness.evaluate()
    assert ready is False
    assert failing == ["thing"]
    assert body["thing"] == "check failed (RuntimeError)"


async def test_a_handler_call_that_hangs_makes_the_consumers_stuck() -> None:
    clock = Clock()
    progress = ConsumerProgress(stall_seconds=60, clock=clock)
    token = progress.started()
    clock.now += 59
    assert progress.check()[0] is True
    clock.now += 2
    ready, body = progress.check()
    assert ready is False
    assert body["consumers"] == "stuck"
    assert body["consumer_busy_seconds"] == 61.0
    progress.finished(token)
    assert progress.check()[0] is True
