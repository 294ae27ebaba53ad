"""Storage faults: what they are, how a connection survives them, and how the service reports them (issue 10).

A storage fault is an error of the disk or the database file rather than of a record: the file system is full or
read-only, an I/O error, a locked or damaged database (``is_storage_fault``). Before this module a fault wedged
the consumer: SQLite rolls a transaction back by itself on ``SQLITE_FULL``/``SQLITE_IOERR``, the explicit
``ROLLBACK`` then failed with "cannot rollback - no transaction is active", which hid the real error, and the
one long-lived connection stayed in whatever state the fault left it.

- ``rollback_quietly`` rolls back only when a transaction is still open and never masks the original error;
- ``ReopeningConnection`` drops its connection on a fault (so no file stays open on a read-only or full file
  system) and opens a new one on next use: the service recovers by itself when storage returns;
- ``StorageHealth`` is what the consumer and ``/health/ready`` share: not ready while the last write failed
  (or the state folder is read-only or full), the cause logged once per change (never a record value: SQLite's
  error names and fixed messages only, as values are bound parameters), recovery logged with how long it took,
  and a bounded exponential backoff between attempts (the batch is not acknowledged, so Kafka redelivers it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cld_runtime.files import os_reason
from cld_runtime.settings import StartupError

from .pg import is_pg_fault

MIN_FREE_BYTES: Final = 1024 * 1024
"""Below this much free space in the state folder the service is not ready (a write would fail)."""


class StorageUnavailableError(StartupError):
    """The state folder cannot be used (at start: read-only, missing permission, full). One clear line."""

    def __init__(self, path: Path, cause: str) -> None:
        super().__init__(f"the state directory {path} cannot be written: {cause}")
        self.path = path
        self.cause = cause


def is_storage_fault(exc: BaseException) -> bool:
    """Whether an error is the storage's (may pass on a retry: locked or busy, disk full, read-only, I/O, out of
    memory, a damaged or unreadable file) rather than the record's (IntegrityError, ValueError and the like)."""
    return (
        isinstance(exc, sqlite3.OperationalError | sqlite3.InternalError | OSError | MemoryError)
        or type(exc) is sqlite3.DatabaseError  # 'database disk image is malformed', 'file is not a database'
        or is_pg_fault(exc)  # PostgreSQL (issue 12): a lost connection, a server shutting down, a deadlock
    )


def fault_cause(exc: BaseException) -> str:
    """A short, fixed description of a storage fault: SQLite's error name and message (values are bound
    parameters, so SQLite's messages carry none), or the OS error's reason. Never a record value."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        return f"{name}: {str(exc)[:120]}"
    if isinstance(exc, OSError):
        return os_reason(exc)
    if is_pg_fault(exc):  # the primary message only (a DETAIL line could quote a value)
        return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}"
    return type(exc).__name__


def rollback_quietly(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open (SQLite may have rolled back by itself); never raises."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def close_quietly(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.close()


class ReopeningConnection:
    """One long-lived SQLite connection that is dropped on a storage fault and opened again on next use."""

    def __init__(self, opener: Callable[[], sqlite3.Connection]) -> None:
        self._opener = opener
        self._conn: sqlite3.Connection | None = opener()

    def get(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._opener()
        return self._conn

    def release(self) -> None:
        """Close the connection (its files are no longer held open); the next ``get`` opens a new one."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            rollback_quietly(conn)
            close_quietly(conn)

    def failed(self, exc: BaseException, *cursors: sqlite3.Cursor) -> None:
        """After an error in a write: roll back what is left and, for a storage fault, drop the connection.

        ``cursors``: the write's cursors, closed first. The exception's traceback keeps them alive, and a cursor
        alive holds its statement, which keeps the closed connection a 'zombie' with its files still open (so a
        full or read-only file system could not be given back or remounted)."""
        for cur in cursors:
            with contextlib.suppress(sqlite3.Error):
                cur.close()
        if self._conn is not None:
            rollback_quietly(self._conn)
        if is_storage_fault(exc):
            self.release()

    @property
    def is_open(self) -> bool:
        return self._conn is not None


def folder_problem(path: Path, *, min_free: int = MIN_FREE_BYTES) -> str | None:
    """Why the folder cannot take a write now (read-only, full, missing), or None. No writes: ``statvfs``."""
    try:
        st = os.statvfs(path)
    except OSError as exc:
        return os_reason(exc)
    if st.f_flag & os.ST_RDONLY:
        return "read-only file system"
    if st.f_bavail * st.f_frsize < min_free:
        return "no space left on the device"
    return None


@dataclass
class StorageStatus:
    ready: bool
    cause: str | None
    since: float | None
    failed_attempts: int


class StorageHealth:
    """The state folder's health as the consumer experienced it, plus a live look at the folder.

    ``failed(exc)`` after a write failed with a storage fault, ``ok()`` after a write succeeded. Logs one line
    per change of cause (ERROR) and one on recovery (WARNING); between, nothing (the count of failed attempts is
    in the recovery line and in ``/health/ready``). ``backoff()`` waits before the batch is given back to
    Kafka: 0.2 s doubling to ``max_delay``, so a lasting fault costs a few attempts a minute, not thousands.
    """

    def __init__(
        self,
        folder: Path,
        *,
        log: logging.Logger,
        on_fault: Callable[[], None] = lambda: None,
        min_delay: float = 0.2,
        max_delay: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = Path(folder)
        self.log = log
        self._on_fault = on_fault
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._clock = clock
        self._lock = threading.Lock()
        self._cause: str | None = None
        self._since: float | None = None
        self._attempts = 0

    def failed(self, exc: BaseException) -> None:
        cause = fault_cause(exc)
        with self._lock:
            changed = cause != self._cause
            first = self._cause is None
            self._cause = cause
            self._attempts += 1
            if first:
                self._since = self._clock()
            attempts = self._attempts
        self._on_fault()
        if changed:
            self.log.error(
                "state storage unavailable: records are not stored and offsets not committed until it returns",
                extra={"cause": cause, "folder": str(self.folder), "failed_attempts": attempts},
            )

    def ok(self) -> None:
        with self._lock:
            if self._cause is None:
                return
            cause, since, attempts = self._cause, self._since, self._attempts
            self._cause, self._since, self._attempts = None, None, 0
        self.log.warning(
            "state storage recovered: storing and committing again",
            extra={
                "cause": cause,
                "down_seconds": round(self._clock() - since, 1) if since is not None else None,
                "failed_attempts": attempts,
            },
        )

    async def backoff(self) -> None:
        """Wait before the failed batch is handed back (a retry delay, not synchronisation)."""
        with self._lock:
            n = max(self._attempts - 1, 0)
        await asyncio.sleep(min(self._min_delay * (2 ** min(n, 16)), self._max_delay))

    def status(self) -> StorageStatus:
        with self._lock:
            cause, since, attempts = self._cause, self._since, self._attempts
        if cause is None:
            cause = folder_problem(self.folder)
        return StorageStatus(ready=cause is None, cause=cause, since=since, failed_attempts=attempts)

    def check(self) -> tuple[bool, dict[str, Any]]:
        """A readiness check (``cld_runtime.http.Readiness``): (ready, details without personal data)."""
        s = self.status()
        body: dict[str, Any] = {"state_store": "writable" if s.ready else "unavailable"}
        if not s.ready:
            body["state_store_cause"] = s.cause
            body["state_store_failed_attempts"] = s.failed_attempts
        return s.ready, body
