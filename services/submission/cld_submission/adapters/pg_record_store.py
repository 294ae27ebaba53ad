"""The record state in PostgreSQL (issue 12): ``sqlite_record_store.StateStore``'s rules and answers, shared by many
instances.

Same rules as the SQLite store (``sqlite_record_store.py``'s docstring: identity, later version wins, withdrawn, a
repeated event is a no-op, scope for a period) on the same columns, so both engines answer the same (the repository
contract tests, ``tests/integration/test_repository_contract.py``, run one suite against both).

What several instances sharing the database add:
- a batch is applied in ONE transaction together with each partition's next offset. That transaction first locks
  the offset row of every (topic, partition) it carries, then every LA it touches (``pg_advisory_xact_lock``),
  in one global order (no deadlock). An instance that still applies a partition just reassigned to another (a
  rebalance) makes the other wait; the second then finds the events it redelivers in ``seen_events`` and applies
  nothing twice. Offsets are never used to skip (FastStream's in-memory broker reports 0 for every message);
  the stored next offset only moves forward (GREATEST);
- the record-key secret lives in the database (``record_key_secret``), so every instance keys a record the same
  way; the first instance seeds it from its state directory's secret (a single instance moving to PostgreSQL
  keeps its record keys);
- reads for assembly stream from a server-side cursor in one REPEATABLE READ, READ ONLY transaction (a snapshot
  while the consumers keep writing), ordered by record key in byte order (``COLLATE "C"``), as SQLite orders.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg_pool import ConnectionPool

from cld_schemas.events import RecordPseudonymised, RecordValidated

from ..domain.identity import Identity, KeyHasher, Kind, canonical_json, identify
from ..domain.records import Applied, HeldOut, Incoming, StoredRecord
from .pg import migrate, open_pool
from .sqlite_record_store import (
    _COLUMNS,
    RECORD_COLUMNS,
    _is_newer,
    _scope_body,
    _stored,
    _unambiguous,
    load_or_create_secret,
    record_row,
)

_BATCH: Final = 2000
_PARAM: Final = re.compile(r":(la|ps|pe)\b")

Conn = psycopg.Connection[tuple[Any, ...]]


def _pg(sql: str) -> str:
    """The scope SQL of ``sqlite_record_store.py`` in PostgreSQL's dialect (named parameters, a plain JOIN)."""
    return _PARAM.sub(r"%(\1)s", sql.replace("CROSS JOIN", "JOIN"))


def _scope_sql(la_code: str, start: date, end: date, *, count: bool) -> tuple[str, dict[str, str]]:
    body, params = _scope_body(la_code, start, end)
    if count:
        return _pg(f"SELECT count(*) FROM ({body}) AS s"), params  # noqa: S608 - constant fragments
    return _pg(f'{body} ORDER BY r.record_key COLLATE "C"'), params


def _left_out_sql(la_code: str, start: date, end: date) -> tuple[str, dict[str, str]]:
    body, params = _scope_body(la_code, start, end)
    sql = (
        "SELECT o.record_key, o.kind, o.start_date, o.der_end_date, o.death_date, o.record_json FROM records o "  # noqa: S608
        f"LEFT JOIN ({body}) AS s ON s.record_key = o.record_key "
        "WHERE o.la_code = :la AND o.withdrawn = 0 AND s.record_key IS NULL "
        'ORDER BY o.record_key COLLATE "C"'
    )  # an anti-join: NOT IN (subquery) is not hashed once the keys outgrow work_mem, and then goes quadratic
    return _pg(sql), params


def shared_secret(conn: Conn, seed: bytes) -> bytes:
    """The record-key secret of the database (``seed`` stored first when it has none)."""
    conn.execute("INSERT INTO record_key_secret (id, secret) VALUES (1, %s) ON CONFLICT (id) DO NOTHING", (seed,))
    row = conn.execute("SELECT secret FROM record_key_secret WHERE id = 1").fetchone()
    assert row is not None
    return bytes(row[0])


class PgStateStore:
    """The durable per-LA record state in PostgreSQL. Thread-safe (a connection pool)."""

    def __init__(self, pool: ConnectionPool, hasher: KeyHasher, *, owns_pool: bool = True) -> None:
        self._pool = pool
        self._hasher = hasher
        self._owns_pool = owns_pool
        self._closed = threading.Event()

    @classmethod
    def open(cls, url: str, state_dir: Path) -> PgStateStore:
        """Connect, apply the migrations, and read (or seed) the shared record-key secret."""
        pool = open_pool(url, name="cld-records")
        try:
            with pool.connection() as conn:
                migrate(conn)
                secret = shared_secret(conn, load_or_create_secret(Path(state_dir)))
        except BaseException:
            pool.close()
            raise
        return cls(pool, KeyHasher(secret))

    @property
    def hasher(self) -> KeyHasher:
        return self._hasher

    def close(self) -> None:
        if self._owns_pool and not self._closed.is_set():
            self._closed.set()
            self._pool.close()

    def release(self) -> None:
        """After a storage fault: drop the pool's idle connections (a broken one is not reused)."""
        self._pool.check()

    # -- writes ---------------------------------------------------------------------------------------

    def apply(
        self,
        event: RecordValidated,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> Applied:
        return self.apply_many([Incoming(event, topic, partition, offset)])[0]

    def apply_many(self, items: Iterable[Incoming]) -> list[Applied]:
        """Apply records in order, in ONE transaction that also stores each partition's next offset.

        Set-based (a round trip per statement, not per record): the batch's events are marked seen in one
        statement, the versions held of its record keys read in one, and each record decided in order in memory
        (exactly as applying them one by one would: a later record of the batch sees an earlier one's outcome);
        then the final version of each key is written."""
        batch = list(items)
        next_offsets: dict[tuple[str, int], int] = {}
        for item in batch:
            if item.topic is not None and item.partition is not None and item.offset is not None:
                tp = (item.topic, item.partition)
                next_offsets[tp] = max(next_offsets.get(tp, 0), item.offset + 1)
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            for topic, partition in sorted(next_offsets):  # one global lock order: offset rows, then LAs
                cur.execute(
                    "INSERT INTO offsets (topic, kafka_partition, next_offset) VALUES (%s, %s, 0) "
                    "ON CONFLICT (topic, kafka_partition) DO NOTHING",
                    (topic, partition),
                )
                cur.execute(
                    "SELECT next_offset FROM offsets WHERE topic = %s AND kafka_partition = %s FOR UPDATE",
                    (topic, partition),
                )
            for la in sorted({i.event.la_code for i in batch}):
                cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("cld-records:" + la,))
            out = self._apply_batch(cur, batch)
            if next_offsets:
                cur.executemany(
                    "UPDATE offsets SET next_offset = GREATEST(next_offset, %s) "
                    "WHERE topic = %s AND kafka_partition = %s",
                    [(o, t, p) for (t, p), o in next_offsets.items()],
                )
        return out

    def _apply_batch(self, cur: psycopg.Cursor[tuple[Any, ...]], batch: list[Incoming]) -> list[Applied]:
        seen_keys = [(i.event.la_code, i.event.provenance.source, i.event.provenance.event_id) for i in batch]
        unique_seen = list(dict.fromkeys(seen_keys))
        cur.execute(
            "INSERT INTO seen_events (la_code, source, event_id) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING "
            "RETURNING la_code, source, event_id",
            ([k[0] for k in unique_seen], [k[1] for k in unique_seen], [k[2] for k in unique_seen]),
        )
        first_time = {(str(a), str(b), str(c)) for a, b, c in cur.fetchall()}
        fresh: list[tuple[int, Incoming, str, Identity]] = []
        out: list[Applied] = [Applied.DUPLICATE_EVENT] * len(batch)
        for n, (item, seen) in enumerate(zip(batch, seen_keys, strict=True)):
            if seen in first_time:
                first_time.discard(seen)  # a repeat later in the same batch is a duplicate
                canonical = canonical_json(item.event.record)
                fresh.append(
                    (
                        n,
                        item,
                        canonical,
                        identify(self._hasher, item.event.la_code, item.event.record, canonical=canonical),
                    )
                )
        if not fresh:
            return out
        keys = list(dict.fromkeys((i.event.la_code, ident.record_key) for _, i, _, ident in fresh))
        cur.execute(
            "SELECT r.la_code, r.record_key, r.kafka_partition, r.kafka_offset, r.received_at, r.withdrawn, r.kind "
            "FROM records r JOIN unnest(%s::text[], %s::text[]) AS k(la_code, record_key) "
            "ON r.la_code = k.la_code AND r.record_key = k.record_key",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        held: dict[tuple[str, str], tuple[Any, ...]] = {(str(r[0]), str(r[1])): tuple(r[2:]) for r in cur.fetchall()}
        final: dict[tuple[str, str], tuple[Incoming, str, Identity, str]] = {}
        for n, item, canonical, ident in fresh:
            key = (item.event.la_code, ident.record_key)
            existing = held.get(key)
            received_at = item.event.provenance.received_at.isoformat()
            if existing is not None and not _is_newer(item, received_at, existing):
                out[n] = Applied.STALE
                continue
            if item.event.withdrawn:
                out[n] = Applied.WITHDRAWN
            else:
                out[n] = Applied.INSERTED if existing is None or existing[3] else Applied.REPLACED
            held[key] = (item.partition, item.offset, received_at, int(item.event.withdrawn), ident.kind.value)
            final[key] = (item, canonical, ident, received_at)
        if final:
            self._write(cur, list(final.values()))
        return out

    @staticmethod
    def _write(cur: psycopg.Cursor[tuple[Any, ...]], rows: list[tuple[Incoming, str, Identity, str]]) -> None:
        """Upsert the final version of each record key, and replace its links."""
        cols = RECORD_COLUMNS
        updates = ", ".join(f"{c.strip()} = EXCLUDED.{c.strip()}" for c in cols.split(",")[2:])
        values = []
        links: list[tuple[str, str, str]] = []
        for item, canonical, ident, received_at in rows:
            ev = item.event
            values.append(record_row(ev, ident, item, received_at, canonical))
            if not ev.withdrawn:
                links.extend((ev.la_code, ident.record_key, k) for k in ident.linked_person_keys)
        cur.executemany(
            f"INSERT INTO records ({cols}) VALUES ({', '.join(['%s'] * 21)}) "  # noqa: S608 - constant fragments
            f"ON CONFLICT (la_code, record_key) DO UPDATE SET {updates}",
            values,
        )
        cur.execute(
            "DELETE FROM links l USING unnest(%s::text[], %s::text[]) AS k(la_code, record_key) "
            "WHERE l.la_code = k.la_code AND l.record_key = k.record_key",
            ([v[0] for v in values], [v[1] for v in values]),
        )
        if links:
            cur.execute(
                "INSERT INTO links (la_code, record_key, linked_person_key) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING",
                ([x[0] for x in links], [x[1] for x in links], [x[2] for x in links]),
            )

    def apply_pseudonymised(self, events: Iterable[RecordPseudonymised]) -> int:
        """Keep the pseudonymised form of records (``StateStore.apply_pseudonymised``). Idempotent."""
        rows = [
            (e.la_code, e.provenance.source, e.provenance.event_id, e.purpose, e.key_id, canonical_json(e.record))
            for e in events
            if not e.withdrawn
        ]
        if rows:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO pseudonymised (la_code, source, event_id, purpose, key_id, record_json) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (la_code, source, event_id, purpose) "
                    "DO UPDATE SET key_id = EXCLUDED.key_id, record_json = EXCLUDED.record_json",
                    rows,
                )
        return len(rows)

    def pseudonymised_forms(
        self, la_code: str, purpose: str, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """As ``StateStore.pseudonymised_forms`` (exact key; an unknown source only where unambiguous)."""
        wanted = list(dict.fromkeys(keys))
        out: dict[tuple[str, str], dict[str, Any]] = {}
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            for i in range(0, len(wanted), _BATCH):
                chunk = wanted[i : i + _BATCH]
                ids = sorted({e for _, e in chunk})
                forms: dict[str, dict[str, str]] = {}
                for event_id, source, body in conn.execute(
                    "SELECT event_id, source, record_json FROM pseudonymised "
                    "WHERE la_code = %s AND purpose = %s AND event_id = ANY(%s)",
                    (la_code, purpose, ids),
                ):
                    forms.setdefault(str(event_id), {})[str(source)] = str(body)
                legacy = [
                    e
                    for s, e in chunk
                    if s not in forms.get(e, {}) and len(forms.get(e, {})) == 1 and (s == "" or "" in forms[e])
                ]
                senders = _senders(conn, la_code, legacy)
                for source, event_id in chunk:
                    by_source = forms.get(event_id, {})
                    if source in by_source:
                        out[(source, event_id)] = json.loads(by_source[source])
                    elif event_id in legacy:
                        [(form_source, body)] = by_source.items()
                        if _unambiguous(source, form_source, senders.get(event_id, set()) - {""}):
                            out[(source, event_id)] = json.loads(body)
        return out

    def pseudonymised_for(
        self, la_code: str, purpose: str, event_ids: Iterable[str], *, source: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """As ``StateStore.pseudonymised_for``."""
        ids = list(dict.fromkeys(event_ids))
        found: dict[str, list[str]] = {}
        with self._pool.connection() as conn:
            for i in range(0, len(ids), _BATCH):
                for event_id, src, body in conn.execute(
                    "SELECT event_id, source, record_json FROM pseudonymised "
                    "WHERE la_code = %s AND purpose = %s AND event_id = ANY(%s)",
                    (la_code, purpose, ids[i : i + _BATCH]),
                ):
                    if source is None or src == source:
                        found.setdefault(str(event_id), []).append(str(body))
        return {e: json.loads(bodies[0]) for e, bodies in found.items() if len(bodies) == 1}

    def next_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the first offset not yet applied (where a consumer should resume)."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT kafka_partition, next_offset FROM offsets WHERE topic = %s", (topic,)
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def reset(self) -> None:
        """Forget everything (before a rebuild from the topic's beginning). The secret is kept."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("TRUNCATE records, links, seen_events, offsets")

    # -- reads ----------------------------------------------------------------------------------------

    def la_codes(self) -> list[str]:
        with self._pool.connection() as conn:
            rows = conn.execute('SELECT la_code FROM records GROUP BY la_code ORDER BY la_code COLLATE "C"').fetchall()
        return [str(r[0]) for r in rows]

    def newest_received(self) -> dict[str, datetime]:
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT la_code, max(received_at) FROM records GROUP BY la_code").fetchall()
        return {str(la): datetime.fromisoformat(ts) for la, ts in rows}

    def get(self, la_code: str, record_key: str) -> StoredRecord | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM records WHERE la_code = %s AND record_key = %s AND withdrawn = 0",  # noqa: S608
                (la_code, record_key),
            ).fetchone()
        return _stored(row) if row else None

    def count_in_scope(self, la_code: str, period_start: date, period_end: date) -> int:
        sql, params = _scope_sql(la_code, period_start, period_end, count=True)
        with self._pool.connection() as conn:
            row = conn.execute(sql.encode(), params).fetchone()
        return int(row[0]) if row else 0

    def _stream(self, sql: str, params: dict[str, str], batch: int) -> Iterator[tuple[Any, ...]]:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")  # one snapshot
            with conn.cursor(name="cld_stream") as cur:
                cur.itersize = batch
                cur.execute(sql.encode(), params)
                yield from cur

    def iter_left_out(
        self, la_code: str, period_start: date, period_end: date, *, batch: int = 2000
    ) -> Iterator[HeldOut]:
        """As ``StateStore.iter_left_out``."""
        sql, params = _left_out_sql(la_code, period_start, period_end)
        for key, kind, start, end, death, rec in self._stream(sql, params, batch):
            ref = json.loads(rec).get("event_reference")
            yield HeldOut(
                record_key=key,
                kind=Kind(kind),
                start=date.fromisoformat(start) if start else None,
                derived_end=date.fromisoformat(end) if end else None,
                death=date.fromisoformat(death) if death else None,
                event_reference=ref.strip() if isinstance(ref, str) and ref.strip() else None,
            )

    def iter_in_scope(
        self, la_code: str, period_start: date, period_end: date, *, batch: int = 2000
    ) -> Iterator[StoredRecord]:
        """Stream the in-scope records, ordered by record key, from one consistent snapshot."""
        if period_end < period_start:
            raise ValueError("period end is before period start")
        sql, params = _scope_sql(la_code, period_start, period_end, count=False)
        for row in self._stream(sql, params, batch):
            yield _stored(row)

    def iter_in_scope_batches(
        self, la_code: str, period_start: date, period_end: date, *, batch: int = 2000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """As ``StateStore.iter_in_scope_batches``: the in-scope rows undecoded (``_COLUMNS`` order), a batch at a
        time, from one snapshot (the server-side cursor's transaction)."""
        if period_end < period_start:
            raise ValueError("period end is before period start")
        sql, params = _scope_sql(la_code, period_start, period_end, count=False)
        rows: list[tuple[Any, ...]] = []
        for row in self._stream(sql, params, batch):
            rows.append(tuple(row))
            if len(rows) == batch:
                yield rows
                rows = []
        if rows:
            yield rows


def _senders(conn: Conn, la_code: str, event_ids: list[str]) -> dict[str, set[str]]:
    """The sources of the LA known to have sent each event id."""
    out: dict[str, set[str]] = {}
    unique = sorted(set(event_ids))
    for i in range(0, len(unique), _BATCH):
        for event_id, source in conn.execute(
            "SELECT event_id, source FROM seen_events WHERE la_code = %s AND event_id = ANY(%s)",
            (la_code, unique[i : i + _BATCH]),
        ):
            out.setdefault(str(event_id), set()).add(str(source))
    return out
