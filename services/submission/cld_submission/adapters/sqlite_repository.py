"""Durable submissions: their state, DQ summaries, manifests (for diffs) and an outbox of lifecycle events.

SQLite (stdlib, WAL) in the state directory, apart from the record state so that the busy consumer and the
submissions never wait on one lock. A state change and the ``SubmissionEvent`` it produced are written in
one transaction (the outbox); events are published from the outbox afterwards, so a crash between the two
publishes the event on restart instead of losing it.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, NamedTuple

from cld_runtime.files import private_dir, tighten
from cld_schemas.events import SubmissionEvent, SubmissionState

from ..domain.checks import ManifestEntry
from ..domain.lifecycle import Submission
from ..domain.records import RowFindings
from .sqlite_migrations import migrate_sqlite
from .storage import ReopeningConnection

DB_NAME: Final = "submissions.sqlite3"
OUTBOX_LOCK_NAME: Final = "outbox.lock"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS submissions (
    submission_id TEXT PRIMARY KEY,
    la_code TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    requested_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS submissions_by_la ON submissions (la_code, requested_at);
CREATE TABLE IF NOT EXISTS summaries (submission_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS manifests (
    submission_id TEXT NOT NULL,
    record_key TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    open_service INTEGER NOT NULL,
    event_id TEXT,
    opt_outs TEXT,
    source TEXT,
    PRIMARY KEY (submission_id, record_key)
) WITHOUT ROWID;
-- The record-level failures of each submission's rows as they were when the file was assembled (the DQ report
-- page: GET /v1/submissions/{id}/report). Only rows with failures; row = data row of the file (1 = first).
CREATE TABLE IF NOT EXISTS row_findings (
    submission_id TEXT NOT NULL,
    row INTEGER NOT NULL,
    event_reference TEXT,
    findings_json TEXT NOT NULL,
    PRIMARY KEY (submission_id, row)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # few, important writes: every commit reaches the disk
        conn.execute("PRAGMA busy_timeout=30000")
    except BaseException:
        conn.close()  # no half-opened connection keeps the file open
        raise
    return conn


class ExportRow(NamedTuple):
    """What an export needs of one manifest row."""

    record_key: str
    event_id: str | None
    opt_outs: str | None
    source: str | None


class BufferedManifest:
    """One submission's manifest and row findings, buffered and written ``batch`` rows at a time by the engine's
    ``flush`` (inside the repository's ``manifest`` transaction)."""

    def __init__(self, submission_id: str, batch: int = 5000) -> None:
        self._id = submission_id
        self._batch = batch
        self._rows: list[tuple[str, str, str, int, str | None, str | None, str | None]] = []
        self._failed: list[tuple[str, int, str | None, str]] = []

    def add(
        self,
        entry: ManifestEntry,
        *,
        event_id: str | None = None,
        opt_outs: str | None = None,
        source: str | None = None,
    ) -> None:
        """``source`` + ``event_id`` (the row's pseudonymised form) and ``opt_outs`` (comma-separated flags, ''
        for none) are what an export needs."""
        self._rows.append(
            (self._id, entry.record_key, entry.content_hash, int(entry.open_service), event_id, opt_outs, source)
        )
        if len(self._rows) >= self._batch:
            self.flush()

    def add_row_findings(self, failed: RowFindings) -> None:
        """The failures of one row of the file (kept with the manifest, for the submission's DQ report)."""
        self._failed.append(
            (self._id, failed.row, failed.event_reference, json.dumps(failed.findings, separators=(",", ":")))
        )
        if len(self._failed) >= self._batch:
            self.flush()

    def flush(self) -> None:
        raise NotImplementedError


class ManifestWriter(BufferedManifest):
    """Streams one submission's manifest into the database in batches (inside ``Repository.manifest``)."""

    def __init__(self, conn: sqlite3.Connection, submission_id: str, batch: int = 5000) -> None:
        super().__init__(submission_id, batch)
        self._conn = conn

    def flush(self) -> None:
        if self._failed:
            self._conn.executemany(
                "INSERT OR REPLACE INTO row_findings (submission_id, row, event_reference, findings_json) "
                "VALUES (?, ?, ?, ?)",
                self._failed,
            )
            self._failed.clear()
        if self._rows:
            self._conn.executemany(
                "INSERT OR REPLACE INTO manifests (submission_id, record_key, content_hash, open_service, "
                "event_id, opt_outs, source) VALUES (?, ?, ?, ?, ?, ?, ?)",
                self._rows,
            )
            self._rows.clear()


class Repository:
    """Submissions and their events. Thread-safe (one connection behind a lock)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir = Path(state_dir)
        private_dir(state_dir)
        self._path = state_dir / DB_NAME
        self._lock = threading.Lock()
        # Dropped on a storage fault and opened again on next use (``storage.ReopeningConnection``).
        self._db = ReopeningConnection(lambda: _connect(self._path))
        try:
            self._init_schema()
        except BaseException:
            self._db.release()
            raise
        for suffix in ("", "-wal", "-shm"):
            tighten(self._path.with_name(self._path.name + suffix))

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._db.get()

    def _init_schema(self) -> None:
        migrate_sqlite(self._conn, "submissions", lambda: self._conn.executescript(_SCHEMA))  # versioned
        # Files written before versions were recorded (and put back in such a shape): the in-code upgrades.
        cols = {r[1] for r in self._conn.execute("PRAGMA table_info(manifests)")}
        for col in ("event_id", "opt_outs", "source"):  # added for exports; NULL in manifests written before
            if col not in cols:
                self._conn.execute(f"ALTER TABLE manifests ADD COLUMN {col} TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.release()

    def release(self) -> None:
        """Close the connection after a storage fault (no file held open); the next use opens a new one."""
        with self._lock:
            self._db.release()

    def save(
        self,
        subs: Sequence[Submission],
        events: Sequence[SubmissionEvent],
        *,
        expected: Mapping[str, SubmissionState] | None = None,
    ) -> bool:
        """Persist submissions and queue their events, atomically (only if each of ``expected`` is still in its
        state: ``ports.SubmissionsRepository.save``)."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for sid, state in (expected or {}).items():
                    row = cur.execute("SELECT state FROM submissions WHERE submission_id = ?", (sid,)).fetchone()
                    if row is None or row[0] != state.value:
                        cur.execute("ROLLBACK")
                        return False
                for s in subs:
                    cur.execute(
                        "INSERT OR REPLACE INTO submissions (submission_id, la_code, period_start, period_end, "
                        "state, version, requested_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            s.submission_id,
                            s.la_code,
                            s.period_start.isoformat(),
                            s.period_end.isoformat(),
                            s.state.value,
                            s.version,
                            s.requested_at.isoformat(),
                            s.model_dump_json(),
                        ),
                    )
                cur.executemany("INSERT INTO outbox (body) VALUES (?)", [(e.model_dump_json(),) for e in events])
                cur.execute("COMMIT")
            except BaseException as exc:  # the real error, never a failed ROLLBACK's (storage.py)
                self._db.failed(exc, cur)
                raise
        return True

    def get(self, submission_id: str) -> Submission | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT body FROM submissions WHERE submission_id = ?", (submission_id,)
            ).fetchone()
        return Submission.model_validate_json(row[0]) if row else None

    def history(self, la_code: str | None = None) -> list[Submission]:
        """Oldest first."""
        with self._lock:
            if la_code is None:
                rows = self._conn.execute("SELECT body FROM submissions ORDER BY requested_at").fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT body FROM submissions WHERE la_code = ? ORDER BY requested_at, version", (la_code,)
                ).fetchall()
        return [Submission.model_validate_json(r[0]) for r in rows]

    def in_states(self, states: Iterable[SubmissionState]) -> list[Submission]:
        wanted = [s.value for s in states]
        marks = ",".join("?" * len(wanted))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT body FROM submissions WHERE state IN ({marks}) ORDER BY requested_at",  # noqa: S608
                wanted,
            ).fetchall()
        return [Submission.model_validate_json(r[0]) for r in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT la_code, state, count(*) FROM submissions GROUP BY la_code, state"
            ).fetchall()
        return {(la, st): int(n) for la, st, n in rows}

    # -- summaries and manifests ----------------------------------------------------------------------

    def put_summary(self, submission_id: str, body: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO summaries (submission_id, body) VALUES (?, ?)", (submission_id, body)
            )

    def get_summary(self, submission_id: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT body FROM summaries WHERE submission_id = ?", (submission_id,)).fetchone()
        return str(row[0]) if row else None

    def write_manifest(self, submission_id: str, entries: Iterable[ManifestEntry]) -> None:
        with closing(_connect(self._path)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            w = ManifestWriter(conn, submission_id)
            for e in entries:
                w.add(e)
            w.flush()
            conn.execute("COMMIT")

    @contextmanager
    def manifest(self, submission_id: str) -> Iterator[ManifestWriter]:
        """The unit of work of one submission's manifest: a dedicated connection and one write transaction,
        committed (after a last flush) when the block ends and rolled back when it raises."""
        conn = _connect(self._path)
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            writer = ManifestWriter(conn, submission_id)
            yield writer
            writer.flush()
            conn.execute("COMMIT")
        except BaseException:
            with suppress(Exception):
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def delete_manifest(self, submission_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM manifests WHERE submission_id = ?", (submission_id,))
            self._conn.execute("DELETE FROM row_findings WHERE submission_id = ?", (submission_id,))

    def iter_row_findings(self, submission_id: str, *, batch: int = 5000) -> Iterator[RowFindings]:
        """The failed rows of a submission file, in row order (from one read transaction)."""
        conn = _connect(self._path)
        try:
            conn.execute("BEGIN")
            cur = conn.execute(
                "SELECT row, event_reference, findings_json FROM row_findings WHERE submission_id = ? ORDER BY row",
                (submission_id,),
            )
            while rows := cur.fetchmany(batch):
                for row, ref, body in rows:
                    yield RowFindings(
                        row, ref, [(f[0], f[1], f[2], f[3], f[4], f[5] if len(f) > 5 else "") for f in json.loads(body)]
                    )
            conn.execute("COMMIT")
        finally:
            conn.close()

    def iter_manifest(self, submission_id: str, *, batch: int = 5000) -> Iterator[ManifestEntry]:
        conn = _connect(self._path)
        try:
            conn.execute("BEGIN")
            cur = conn.execute(
                "SELECT record_key, content_hash, open_service FROM manifests WHERE submission_id = ? "
                "ORDER BY record_key",
                (submission_id,),
            )
            while rows := cur.fetchmany(batch):
                for k, h, o in rows:
                    yield ManifestEntry(record_key=k, content_hash=h, open_service=bool(o))
            conn.execute("COMMIT")
        finally:
            conn.close()

    def iter_export_manifest(self, submission_id: str, *, batch: int = 5000) -> Iterator[ExportRow]:
        """Each row's record key, event id, opt-out flags and source, in file order (record key). ``None``
        flags: the manifest predates opt-out recording (an export must then be refused: fail closed). ``None``
        source: it predates source recording (the export joins as for an unknown source: ``StateStore.
        pseudonymised_forms``)."""
        conn = _connect(self._path)
        try:
            conn.execute("BEGIN")
            cur = conn.execute(
                "SELECT record_key, event_id, opt_outs, source FROM manifests WHERE submission_id = ? "
                "ORDER BY record_key",
                (submission_id,),
            )
            while rows := cur.fetchmany(batch):
                for k, e, f, src in rows:
                    yield ExportRow(str(k), e, f, src)
            conn.execute("COMMIT")
        finally:
            conn.close()

    # -- outbox ---------------------------------------------------------------------------------------

    def pending_events(self, limit: int = 500) -> list[tuple[int, SubmissionEvent]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, body FROM outbox WHERE published = 0 ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(int(seq), SubmissionEvent.model_validate_json(body)) for seq, body in rows]

    def mark_published(self, seqs: Sequence[int]) -> None:
        with self._lock:
            self._conn.executemany("UPDATE outbox SET published = 1 WHERE seq = ?", [(s,) for s in seqs])

    # -- several writers (issue 12: the same semantics as ``pg_repository.PgRepository``) ---------------------

    def save_if(self, sub: Submission, event: SubmissionEvent, *, expected: SubmissionState) -> bool:
        """Persist ``sub`` and queue ``event`` only if the stored submission is still in ``expected``."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                row = cur.execute(
                    "SELECT state FROM submissions WHERE submission_id = ?", (sub.submission_id,)
                ).fetchone()
                if row is None or row[0] != expected.value:
                    cur.execute("ROLLBACK")
                    return False
                cur.execute(
                    "UPDATE submissions SET state = ?, version = ?, body = ?, send_claimed_by = NULL, "
                    "send_claimed_at = NULL WHERE submission_id = ?",
                    (sub.state.value, sub.version, sub.model_dump_json(), sub.submission_id),
                )
                cur.execute("INSERT INTO outbox (body) VALUES (?)", (event.model_dump_json(),))
                cur.execute("COMMIT")
            except BaseException as exc:
                self._db.failed(exc, cur)
                raise
        return True

    def claim_send(self, submission_id: str, *, instance: str, lease: timedelta) -> bool:
        """Claim an approved submission for sending: True for one caller only (``BEGIN IMMEDIATE`` serialises
        writers of the file); a claim older than ``lease`` may be taken over."""
        now = datetime.now(UTC)
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute(
                    "UPDATE submissions SET send_claimed_by = ?, send_claimed_at = ? WHERE submission_id = ? "
                    "AND state = ? AND (send_claimed_by IS NULL OR send_claimed_by = ? OR send_claimed_at < ?)",
                    (
                        instance,
                        now.isoformat(),
                        submission_id,
                        SubmissionState.APPROVED.value,
                        instance,
                        (now - lease).isoformat(),
                    ),
                )
                won = cur.rowcount == 1
                cur.execute("COMMIT")
            except BaseException as exc:
                self._db.failed(exc, cur)
                raise
        return won

    @contextmanager
    def outbox_drainer(self) -> Iterator[bool]:
        """The outbox for one drainer at a time: an exclusive ``flock`` of a file beside the database (released
        by the kernel when its holder dies; each call opens the file anew, so threads exclude each other too)."""
        fd = os.open(self._path.with_name(OUTBOX_LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
