"""Submissions in PostgreSQL (issue 12): ``repository.Repository``'s tables and answers, shared by many instances.

A state change and the events it produced are written in one transaction (the outbox), as in SQLite. What
several instances sharing the database add:
- ``save_if``: a compare-and-set on the stored state (``UPDATE ... WHERE state = expected``, the row locked), so
  two instances approving, tracking or retrying one submission at the same moment move it once: the second
  finds it moved and writes nothing;
- ``claim_send``: ``UPDATE submissions SET send_claimed_by = ... WHERE state = 'approved' AND (unclaimed or the
  claim older than the lease) RETURNING``: of any number of instances, one is handed the submission to send;
- ``outbox_drainer``: ``pg_try_advisory_lock`` on a connection held while draining: one drainer at a time
  across every instance; the lock goes with the session if its holder dies.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg_pool import ConnectionPool

from cld_schemas.events import SubmissionEvent, SubmissionState

from ..domain.checks import ManifestEntry
from ..domain.lifecycle import Submission
from ..domain.records import RowFindings
from .pg import OUTBOX_LOCK, migrate, open_pool
from .sqlite_repository import BufferedManifest, ExportRow

_Conn = psycopg.Connection[tuple[Any, ...]]
_UPSERT: Final = (
    "INSERT INTO submissions (submission_id, la_code, period_start, period_end, state, version, requested_at, body) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (submission_id) DO UPDATE SET la_code = EXCLUDED.la_code, "
    "period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, state = EXCLUDED.state, "
    "version = EXCLUDED.version, requested_at = EXCLUDED.requested_at, body = EXCLUDED.body, "
    "send_claimed_by = NULL, send_claimed_at = NULL"
)


def _row(s: Submission) -> tuple[str, str, str, str, str, int, str, str]:
    return (
        s.submission_id,
        s.la_code,
        s.period_start.isoformat(),
        s.period_end.isoformat(),
        s.state.value,
        s.version,
        s.requested_at.isoformat(),
        s.model_dump_json(),
    )


class PgManifestWriter(BufferedManifest):
    """Streams one submission's manifest and row findings in batches inside ``PgRepository.manifest``."""

    def __init__(self, conn: _Conn, submission_id: str, batch: int = 5000) -> None:
        super().__init__(submission_id, batch)
        self._conn = conn

    def flush(self) -> None:
        with self._conn.cursor() as cur:
            if self._failed:
                cur.executemany(
                    "INSERT INTO row_findings (submission_id, row, event_reference, findings_json) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (submission_id, row) DO UPDATE SET "
                    "event_reference = EXCLUDED.event_reference, findings_json = EXCLUDED.findings_json",
                    self._failed,
                )
                self._failed.clear()
            if self._rows:
                with cur.copy(
                    "COPY manifests (submission_id, record_key, content_hash, open_service, event_id, opt_outs, "
                    "source) FROM STDIN"
                ) as copy:
                    for r in self._rows:
                        copy.write_row(r)
                self._rows.clear()


class PgRepository:
    """Submissions and their events in PostgreSQL. Thread-safe (a connection pool)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    @classmethod
    def open(cls, url: str) -> PgRepository:
        pool = open_pool(url, max_size=6, name="cld-submissions")
        try:
            with pool.connection() as conn:
                migrate(conn)
        except BaseException:
            pool.close()
            raise
        return cls(pool)

    def close(self) -> None:
        self._pool.close()

    def release(self) -> None:
        self._pool.check()

    def save(
        self,
        subs: Sequence[Submission],
        events: Sequence[SubmissionEvent],
        *,
        expected: Mapping[str, SubmissionState] | None = None,
    ) -> bool:
        """Persist submissions and queue their events, atomically (only if each of ``expected`` is still in its
        state, the rows locked meanwhile)."""
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if expected:
                cur.execute(
                    "SELECT submission_id, state FROM submissions WHERE submission_id = ANY(%s) FOR UPDATE",
                    (sorted(expected),),
                )
                found = {str(i): str(st) for i, st in cur.fetchall()}
                if any(found.get(i) != st.value for i, st in expected.items()):
                    return False
            if subs:
                cur.executemany(_UPSERT, [_row(s) for s in subs])
            if events:
                cur.executemany("INSERT INTO outbox (body) VALUES (%s)", [(e.model_dump_json(),) for e in events])
        return True

    def save_if(self, sub: Submission, event: SubmissionEvent, *, expected: SubmissionState) -> bool:
        with self._pool.connection() as conn, conn.transaction():
            moved = conn.execute(
                "UPDATE submissions SET state = %s, version = %s, body = %s, send_claimed_by = NULL, "
                "send_claimed_at = NULL WHERE submission_id = %s AND state = %s",
                (sub.state.value, sub.version, sub.model_dump_json(), sub.submission_id, expected.value),
            )
            if moved.rowcount != 1:
                return False
            conn.execute("INSERT INTO outbox (body) VALUES (%s)", (event.model_dump_json(),))
        return True

    def get(self, submission_id: str) -> Submission | None:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT body FROM submissions WHERE submission_id = %s", (submission_id,)).fetchone()
        return Submission.model_validate_json(row[0]) if row else None

    def history(self, la_code: str | None = None) -> list[Submission]:
        """Oldest first."""
        with self._pool.connection() as conn:
            if la_code is None:
                rows = conn.execute("SELECT body FROM submissions ORDER BY requested_at").fetchall()
            else:
                rows = conn.execute(
                    "SELECT body FROM submissions WHERE la_code = %s ORDER BY requested_at, version", (la_code,)
                ).fetchall()
        return [Submission.model_validate_json(r[0]) for r in rows]

    def in_states(self, states: Iterable[SubmissionState]) -> list[Submission]:
        wanted = [s.value for s in states]
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT body FROM submissions WHERE state = ANY(%s) ORDER BY requested_at", (wanted,)
            ).fetchall()
        return [Submission.model_validate_json(r[0]) for r in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT la_code, state, count(*) FROM submissions GROUP BY la_code, state").fetchall()
        return {(str(la), str(st)): int(n) for la, st, n in rows}

    # -- summaries and manifests ----------------------------------------------------------------------

    def put_summary(self, submission_id: str, body: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO summaries (submission_id, body) VALUES (%s, %s) "
                "ON CONFLICT (submission_id) DO UPDATE SET body = EXCLUDED.body",
                (submission_id, body),
            )

    def get_summary(self, submission_id: str) -> str | None:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT body FROM summaries WHERE submission_id = %s", (submission_id,)).fetchone()
        return str(row[0]) if row else None

    @contextlib.contextmanager
    def manifest(self, submission_id: str) -> Iterator[PgManifestWriter]:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM manifests WHERE submission_id = %s", (submission_id,))
            conn.execute("DELETE FROM row_findings WHERE submission_id = %s", (submission_id,))
            writer = PgManifestWriter(conn, submission_id)
            yield writer
            writer.flush()

    def write_manifest(self, submission_id: str, entries: Iterable[ManifestEntry]) -> None:
        with self.manifest(submission_id) as w:
            for e in entries:
                w.add(e)

    def delete_manifest(self, submission_id: str) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM manifests WHERE submission_id = %s", (submission_id,))
            conn.execute("DELETE FROM row_findings WHERE submission_id = %s", (submission_id,))

    def _stream(self, sql: str, params: tuple[Any, ...], batch: int) -> Iterator[tuple[Any, ...]]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor(name="cld_manifest") as cur:
            cur.itersize = batch
            cur.execute(sql.encode(), params)
            yield from cur

    def iter_row_findings(self, submission_id: str, *, batch: int = 5000) -> Iterator[RowFindings]:
        for row, ref, body in self._stream(
            "SELECT row, event_reference, findings_json FROM row_findings WHERE submission_id = %s ORDER BY row",
            (submission_id,),
            batch,
        ):
            yield RowFindings(
                row, ref, [(f[0], f[1], f[2], f[3], f[4], f[5] if len(f) > 5 else "") for f in json.loads(body)]
            )

    def iter_manifest(self, submission_id: str, *, batch: int = 5000) -> Iterator[ManifestEntry]:
        for k, h, o in self._stream(
            "SELECT record_key, content_hash, open_service FROM manifests WHERE submission_id = %s "
            'ORDER BY record_key COLLATE "C"',
            (submission_id,),
            batch,
        ):
            yield ManifestEntry(record_key=k, content_hash=h, open_service=bool(o))

    def iter_export_manifest(self, submission_id: str, *, batch: int = 5000) -> Iterator[ExportRow]:
        for k, e, f, src in self._stream(
            "SELECT record_key, event_id, opt_outs, source FROM manifests WHERE submission_id = %s "
            'ORDER BY record_key COLLATE "C"',
            (submission_id,),
            batch,
        ):
            yield ExportRow(str(k), e, f, src)

    # -- several instances ----------------------------------------------------------------------------

    def claim_send(self, submission_id: str, *, instance: str, lease: timedelta) -> bool:
        now = datetime.now(UTC)
        with self._pool.connection() as conn:
            row = conn.execute(
                "UPDATE submissions SET send_claimed_by = %s, send_claimed_at = %s WHERE submission_id = %s "
                "AND state = %s AND (send_claimed_by IS NULL OR send_claimed_by = %s OR send_claimed_at < %s) "
                "RETURNING submission_id",
                (instance, now, submission_id, SubmissionState.APPROVED.value, instance, now - lease),
            ).fetchone()
        return row is not None

    @contextlib.contextmanager
    def outbox_drainer(self) -> Iterator[bool]:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (OUTBOX_LOCK,)).fetchone()
            mine = bool(row and row[0])
            try:
                yield mine
            finally:
                if mine:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (OUTBOX_LOCK,))

    def pending_events(self, limit: int = 500) -> list[tuple[int, SubmissionEvent]]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT seq, body FROM outbox WHERE published = 0 ORDER BY seq LIMIT %s", (limit,)
            ).fetchall()
        return [(int(seq), SubmissionEvent.model_validate_json(body)) for seq, body in rows]

    def mark_published(self, seqs: Sequence[int]) -> None:
        with self._pool.connection() as conn:
            conn.execute("UPDATE outbox SET published = 1 WHERE seq = ANY(%s)", (list(seqs),))
