"""Submission state: the latest version of every record per LA, and the in-scope view for a period.

One SQLite database (stdlib ``sqlite3``, WAL) under the state directory. A validated record is applied in
one transaction together with the Kafka offset it came from, so the store always knows exactly how far it has
read. The consumer commits its Kafka offsets only after a batch is stored; a crash in between redelivers the
tail, which is a no-op (each (LA, source, event id) is applied once). Deleting the database and consuming the
topic from its beginning rebuilds the same state (``entrypoints.rebuild.rebuild_state``).

Rules applied here:
- identity (``identity.identify``): Event Reference, else NHS England's bespoke key (R-FLD-23, R-DUP-4);
- a later version replaces the earlier one. Order is the Kafka offset within a partition (the validated
  topic is keyed by LA code, so one LA's records share a partition); across partitions, the received time;
- a withdrawn record (``RecordValidated.withdrawn``) is removed. Its key is kept as a tombstone, so an
  older copy arriving later cannot bring it back. The specification has no 'cancelled' flag: withdrawing
  is how a source cancels an event it sent (R-SCOPE-3);
- a repeated event (the same LA, source and event id: ``Provenance.source``/``event_id``) is a no-op; the same
  event id from another source or for another LA is another event (one source cannot suppress another's);
- scope for a reporting period (R-SCOPE-1..3, R-FIL-1..3): requests, assessments and reviews completed in
  the period (end date, or date of death when earlier, within it; open ones are out); services active at
  any time in the period (open ones included); rows whose date of death is before the period start or
  before the event start are out; 'Carer known by association' rows when a linked adult has an in-scope
  event, or when they name no linked adult (nothing to judge by: kept). Rows whose event type or dates
  cannot be read are kept in scope (``Kind.UNDETERMINED``): a submission never silently drops a row; the
  record-level DQ findings report them.

Opt-out and objection flags (``Provenance.opt_outs``, set by the source system; ``cld_governance.sharing``) are
kept with each record. They never exclude a record from the NHS England file (the opt-out does not apply to that
legally required flow); exports to other recipients leave flagged records out (``service_layer.exports``).

The pseudonymised form of records (``RecordPseudonymised`` from ``cld.records.pseudonymised.v1``, produced by the
pseudonymisation service, which this service does not import) is kept in a second table keyed by (LA, source, event
id, purpose), like ``seen_events``, so an export can join a record's current version to its own pseudonymised form
(``apply_pseudonymised``, ``pseudonymised_forms``): another LA or source reusing an event id keeps its own.

Reads for assembly stream from their own connection in one read transaction (a consistent snapshot while
the consumer keeps writing), ordered by record key so that equal content gives a byte-identical file.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import closing
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

from cld_runtime.files import private_dir, tighten
from cld_schemas.contract import OptOut, parse_opt_out_header
from cld_schemas.events import RecordPseudonymised, RecordValidated

from ..domain.identity import Identity, KeyHasher, Kind, canonical_json, identify
from ..domain.records import Applied, HeldOut, Incoming, StoredRecord, opt_outs_of
from .sqlite_migrations import migrate_sqlite
from .storage import ReopeningConnection, rollback_quietly

DB_NAME: Final = "records.sqlite3"
SECRET_NAME: Final = "record-key.secret"  # noqa: S105 - a file name, not a secret
_LOOKUP_CHUNK: Final = 500

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS records (
    la_code TEXT NOT NULL,
    record_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    event_type TEXT,
    client_type TEXT,
    person_key TEXT,
    start_date TEXT,
    der_end_date TEXT,
    death_date TEXT,
    event_id TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    kafka_partition INTEGER,
    kafka_offset INTEGER,
    received_at TEXT NOT NULL,
    withdrawn INTEGER NOT NULL DEFAULT 0,
    opt_out INTEGER NOT NULL DEFAULT 0,
    opt_outs TEXT NOT NULL DEFAULT '',
    failed INTEGER NOT NULL DEFAULT 0,
    content_hash TEXT NOT NULL,
    record_json TEXT NOT NULL,
    findings_json TEXT NOT NULL
);
-- A rowid table (rows are ~1 kB of JSON, too wide for WITHOUT ROWID) with the key as a unique index.
CREATE UNIQUE INDEX IF NOT EXISTS records_by_key ON records (la_code, record_key);
CREATE INDEX IF NOT EXISTS records_by_person ON records (la_code, person_key);
CREATE TABLE IF NOT EXISTS links (
    la_code TEXT NOT NULL,
    record_key TEXT NOT NULL,
    linked_person_key TEXT NOT NULL,
    PRIMARY KEY (la_code, record_key, linked_person_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS links_by_person ON links (la_code, linked_person_key);
-- An event id is only unique within its source (and LA): another source reusing it is another event.
CREATE TABLE IF NOT EXISTS seen_events (
    la_code TEXT NOT NULL,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (la_code, source, event_id)
) WITHOUT ROWID;
-- Keyed like seen_events: an event id is only unique within its LA and source. source '' = a row kept from
-- before the source was recorded (``_migrate_pseudonymised``).
CREATE TABLE IF NOT EXISTS pseudonymised (
    la_code TEXT NOT NULL,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    key_id TEXT NOT NULL,
    record_json TEXT NOT NULL,
    PRIMARY KEY (la_code, source, event_id, purpose)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, kafka_partition)
) WITHOUT ROWID;
"""


def _flags_text(flags: frozenset[OptOut]) -> str:
    return ",".join(sorted(f.value for f in flags))


def load_or_create_secret(state_dir: Path) -> bytes:
    """The record-key secret in ``state_dir`` (created 0600 on first use); reused by rebuilds."""
    path = state_dir / SECRET_NAME
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    private_dir(state_dir)
    value = secrets.token_bytes(32)
    # Written whole under a temporary name, then linked into place: two processes starting together on one
    # state dir (or one PostgreSQL database seeding its shared secret) never read a half-written secret.
    tmp = state_dir / f".{SECRET_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(value.hex())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process was first: its secret is the one
            return bytes.fromhex(path.read_text(encoding="ascii").strip())
    finally:
        tmp.unlink(missing_ok=True)
    return value


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        _configure(conn)
    except BaseException:
        conn.close()  # no half-opened connection keeps the file open (a read-only remount needs none)
        raise
    return conn


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # durable at each WAL checkpoint; a crash loses at most
    # the last transactions, which Kafka redelivers because their offsets were not committed either.
    conn.execute("PRAGMA busy_timeout=30000")
    # Record keys are random (HMAC): inserts land all over the B-tree, so a larger page cache matters.
    conn.execute("PRAGMA cache_size=-65536")  # 64 MiB per connection
    conn.execute("PRAGMA temp_store=FILE")  # the sort of a 500k-row assembly spills to disk, not to RAM


def tighten_db_files(db: Path) -> None:
    """Make a database and its WAL and shared-memory files 0600 (state written by an earlier version: 0644)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        tighten(db.with_name(db.name + suffix))


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d is not None else None


class StateStore:
    """The durable per-LA record state. Thread-safe: one writer connection behind a lock."""

    def __init__(self, path: Path, hasher: KeyHasher) -> None:
        self._path = Path(path)
        private_dir(self._path.parent)
        self._hasher = hasher
        self._lock = threading.Lock()
        # Dropped on a storage fault and opened again on next use (``storage.ReopeningConnection``).
        self._db = ReopeningConnection(lambda: _connect(self._path))
        try:
            migrate_sqlite(self._conn, "records", self._baseline)  # versioned (``sqlite_migrations``)
            self._migrate()  # and a file put back in an earlier version's shape is upgraded again
        except BaseException:
            self._db.release()
            raise
        tighten_db_files(self._path)

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._db.get()

    def _baseline(self) -> None:
        """Version 1: the schema in code (files written before versions were recorded: ``_migrate``)."""
        self._conn.executescript(_SCHEMA)

    def _migrate(self) -> None:
        """Bring a state database created by an earlier version up to the current schema."""
        cols = {r[1] for r in self._conn.execute("PRAGMA table_info(records)")}
        if "opt_outs" not in cols:
            self._conn.execute("ALTER TABLE records ADD COLUMN opt_outs TEXT NOT NULL DEFAULT ''")
        if "source" not in cols:  # '' for records applied before the source was kept (see pseudonymised_forms)
            self._conn.execute("ALTER TABLE records ADD COLUMN source TEXT NOT NULL DEFAULT ''")
        seen_cols = {r[1] for r in self._conn.execute("PRAGMA table_info(seen_events)")}
        if "source" not in seen_cols:
            self._migrate_seen_events()
        pseudo_cols = {r[1] for r in self._conn.execute("PRAGMA table_info(pseudonymised)")}
        if "source" not in pseudo_cols:
            self._migrate_pseudonymised()

    def _migrate_pseudonymised(self) -> None:
        """``pseudonymised`` was keyed by (event id, purpose): another LA or source reusing an event id overwrote a
        record's pseudonymised form. It is now keyed by (LA, source, event id, purpose).

        The old rows do not say which source sent them. They are kept with source '' (unknown) rather than
        dropped (the pseudonymised consumer's offsets are committed: they would not come back). An export uses
        such a row only where it cannot be another source's (``pseudonymised_forms``); anything ambiguous is
        missing, so the export is refused (409), never filled with another record's form."""
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute("ALTER TABLE pseudonymised RENAME TO pseudonymised_v1")
            cur.execute(
                "CREATE TABLE pseudonymised (la_code TEXT NOT NULL, source TEXT NOT NULL, event_id TEXT NOT NULL, "
                "purpose TEXT NOT NULL, key_id TEXT NOT NULL, record_json TEXT NOT NULL, "
                "PRIMARY KEY (la_code, source, event_id, purpose)) WITHOUT ROWID"
            )
            cur.execute(
                "INSERT INTO pseudonymised (la_code, source, event_id, purpose, key_id, record_json) "
                "SELECT la_code, '', event_id, purpose, key_id, record_json FROM pseudonymised_v1"
            )
            cur.execute("DROP TABLE pseudonymised_v1")
            cur.execute("COMMIT")
        except BaseException:
            rollback_quietly(self._conn)
            raise

    def _migrate_seen_events(self) -> None:
        """``seen_events`` was keyed by event id alone; it is now keyed by (LA, source, event id).

        The old rows do not say which source sent them, so they cannot be carried over as keys: an old id
        kept as 'seen for every source' would go on suppressing other sources' events (the bug this fixes).
        They are dropped. What that costs: an event applied before the upgrade and redelivered after it (the
        uncommitted tail of the last batch) is applied again instead of counted as a duplicate; the
        later-version-wins rule makes that a no-op for the state (same record key, same or older position:
        the same row is written again, or it is stale), so no record is lost or duplicated."""
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute("DROP TABLE seen_events")
            cur.execute(
                "CREATE TABLE seen_events (la_code TEXT NOT NULL, source TEXT NOT NULL, event_id TEXT NOT NULL, "
                "PRIMARY KEY (la_code, source, event_id)) WITHOUT ROWID"
            )
            cur.execute("COMMIT")
        except BaseException:
            rollback_quietly(self._conn)
            raise

    @classmethod
    def open(cls, state_dir: Path) -> StateStore:
        return cls(Path(state_dir) / DB_NAME, KeyHasher(load_or_create_secret(Path(state_dir))))

    @property
    def path(self) -> Path:
        return self._path

    @property
    def hasher(self) -> KeyHasher:
        return self._hasher

    def close(self) -> None:
        with self._lock:
            self._db.release()

    def release(self) -> None:
        """Close the writer connection after a storage fault (no file held open on a full or read-only file
        system); the next write opens a new one."""
        with self._lock:
            self._db.release()

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
        """Apply records in order, in ONE transaction that also stores each partition's next offset."""
        out: list[Applied] = []
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                next_offsets: dict[tuple[str, int], int] = {}
                for item in items:
                    out.append(self._apply_one(cur, item, next_offsets))
                cur.executemany(
                    "INSERT INTO offsets (topic, kafka_partition, next_offset) VALUES (?, ?, ?) "
                    "ON CONFLICT (topic, kafka_partition) DO UPDATE SET next_offset = "
                    "max(next_offset, excluded.next_offset)",
                    [(t, p, o) for (t, p), o in next_offsets.items()],
                )
                cur.execute("COMMIT")
            except BaseException as exc:  # the real error, never a failed ROLLBACK's (storage.py)
                self._db.failed(exc, cur)
                raise
        return out

    def _apply_one(self, cur: sqlite3.Cursor, item: Incoming, next_offsets: dict[tuple[str, int], int]) -> Applied:
        ev = item.event
        if item.topic is not None and item.partition is not None and item.offset is not None:
            # The position is stored in the same transaction as the record: the state knows exactly how far
            # it has read. Redeliveries after a restart are recognised by their event id (below), so the
            # position is not used to skip: FastStream's in-memory test broker reports offset 0 for all.
            tp = (item.topic, item.partition)
            next_offsets[tp] = max(next_offsets.get(tp, 0), item.offset + 1)

        seen = (ev.la_code, ev.provenance.source, ev.provenance.event_id)
        first = cur.execute("INSERT OR IGNORE INTO seen_events (la_code, source, event_id) VALUES (?, ?, ?)", seen)
        if first.rowcount == 0:
            return Applied.DUPLICATE_EVENT

        canonical = canonical_json(ev.record)
        ident = identify(self._hasher, ev.la_code, ev.record, canonical=canonical)
        existing = cur.execute(
            "SELECT kafka_partition, kafka_offset, received_at, withdrawn, kind FROM records "
            "WHERE la_code = ? AND record_key = ?",
            (ev.la_code, ident.record_key),
        ).fetchone()
        received_at = ev.provenance.received_at.isoformat()
        if existing is not None and not _is_newer(item, received_at, existing):
            return Applied.STALE
        had_links = existing is not None and existing[4] == Kind.CARER_BY_ASSOCIATION.value
        self._upsert(cur, ev, ident, item, received_at, canonical, had_links=had_links)
        if ev.withdrawn:
            return Applied.WITHDRAWN
        return Applied.INSERTED if existing is None or existing[3] else Applied.REPLACED

    def _upsert(
        self,
        cur: sqlite3.Cursor,
        ev: RecordValidated,
        ident: Identity,
        item: Incoming,
        received_at: str,
        canonical: str,
        *,
        had_links: bool,
    ) -> None:
        cur.execute(
            f"INSERT OR REPLACE INTO records ({RECORD_COLUMNS}) "  # noqa: S608 - constant column names
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            record_row(ev, ident, item, received_at, canonical),
        )
        cur.execute("DELETE FROM links WHERE la_code = ? AND record_key = ?", (ev.la_code, ident.record_key))
        if not ev.withdrawn and ident.linked_person_keys:
            cur.executemany(
                "INSERT OR IGNORE INTO links (la_code, record_key, linked_person_key) VALUES (?, ?, ?)",
                [(ev.la_code, ident.record_key, k) for k in ident.linked_person_keys],
            )

    def apply_pseudonymised(self, events: Iterable[RecordPseudonymised]) -> int:
        """Keep the pseudonymised form of records (by LA, source, event id and purpose) for exports; withdrawn
        ones are skipped (the record state decides what is current). Idempotent. Returns how many were stored."""
        rows = [
            (e.la_code, e.provenance.source, e.provenance.event_id, e.purpose, e.key_id, canonical_json(e.record))
            for e in events
            if not e.withdrawn
        ]
        if rows:
            with self._lock:
                cur = self._conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    cur.executemany(
                        "INSERT OR REPLACE INTO pseudonymised (la_code, source, event_id, purpose, key_id, "
                        "record_json) VALUES (?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    cur.execute("COMMIT")
                except BaseException as exc:
                    self._db.failed(exc, cur)
                    raise
        return len(rows)

    def pseudonymised_forms(
        self, la_code: str, purpose: str, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """The pseudonymised records for this LA and purpose of these (source, event id) keys; missing ones are
        absent from the answer.

        The match is exact on (LA, source, event id, purpose). Where one side's source is unknown ('': a record
        or a pseudonymised form kept from before the source was recorded) a form is used only when it cannot be
        another source's: it is the only form of that event id for the LA and purpose, and no other source of
        the LA is known to have sent that event id (``seen_events``). Otherwise the key is missing (fail
        closed: an export is refused rather than given another record's form)."""
        wanted = list(dict.fromkeys(keys))
        out: dict[tuple[str, str], dict[str, Any]] = {}
        with closing(_connect(self._path)) as conn:
            conn.execute("BEGIN")  # one snapshot
            for i in range(0, len(wanted), _LOOKUP_CHUNK):
                chunk = wanted[i : i + _LOOKUP_CHUNK]
                ids = sorted({e for _, e in chunk})
                marks = ",".join("?" * len(ids))
                forms: dict[str, dict[str, str]] = {}
                sql = (
                    "SELECT event_id, source, record_json FROM pseudonymised "  # noqa: S608 - placeholders only
                    f"WHERE la_code = ? AND purpose = ? AND event_id IN ({marks})"
                )
                for event_id, source, body in conn.execute(sql, [la_code, purpose, *ids]):
                    forms.setdefault(str(event_id), {})[str(source)] = str(body)
                legacy = [
                    e
                    for s, e in chunk
                    if s not in forms.get(e, {}) and len(forms.get(e, {})) == 1 and (s == "" or "" in forms[e])
                ]
                senders = self._senders(conn, la_code, legacy)
                for source, event_id in chunk:
                    by_source = forms.get(event_id, {})
                    if source in by_source:
                        out[(source, event_id)] = json.loads(by_source[source])
                    elif event_id in legacy:
                        [(form_source, body)] = by_source.items()
                        if _unambiguous(source, form_source, senders.get(event_id, set()) - {""}):
                            out[(source, event_id)] = json.loads(body)
            conn.execute("COMMIT")
        return out

    @staticmethod
    def _senders(conn: sqlite3.Connection, la_code: str, event_ids: list[str]) -> dict[str, set[str]]:
        """The sources of the LA known to have sent each event id."""
        out: dict[str, set[str]] = {}
        unique = sorted(set(event_ids))
        for i in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[i : i + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT event_id, source FROM seen_events WHERE la_code = ? AND event_id IN ({marks})"  # noqa: S608
            for event_id, source in conn.execute(sql, [la_code, *chunk]):
                out.setdefault(str(event_id), set()).add(str(source))
        return out

    def pseudonymised_for(
        self, la_code: str, purpose: str, event_ids: Iterable[str], *, source: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """The pseudonymised records of these event ids for this purpose and LA, by event id: those of ``source``,
        or without it the event ids that have exactly one form (one source); missing ones are absent. Exports
        join on the full key instead (``pseudonymised_forms``)."""
        ids = list(dict.fromkeys(event_ids))
        found: dict[str, list[str]] = {}
        with closing(_connect(self._path)) as conn:
            for i in range(0, len(ids), _LOOKUP_CHUNK):
                chunk = ids[i : i + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = (
                    "SELECT event_id, source, record_json FROM pseudonymised "  # noqa: S608 - placeholders only
                    f"WHERE la_code = ? AND purpose = ? AND event_id IN ({marks})"
                )
                for event_id, src, body in conn.execute(sql, [la_code, purpose, *chunk]):
                    if source is None or src == source:
                        found.setdefault(str(event_id), []).append(str(body))
        return {e: json.loads(bodies[0]) for e, bodies in found.items() if len(bodies) == 1}

    def next_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the first offset not yet applied (where a consumer should resume)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT kafka_partition, next_offset FROM offsets WHERE topic = ?", (topic,)
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def reset(self) -> None:
        """Forget everything (before a rebuild from the topic's beginning)."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.executescript(
                    "BEGIN IMMEDIATE; DELETE FROM records; DELETE FROM links; DELETE FROM seen_events; "
                    "DELETE FROM offsets; COMMIT;"
                )
            except BaseException as exc:
                self._db.failed(exc, cur)
                raise

    # -- reads ----------------------------------------------------------------------------------------

    def la_codes(self) -> list[str]:
        with closing(_connect(self._path)) as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT la_code FROM records ORDER BY la_code")]

    def newest_received(self) -> dict[str, datetime]:
        with closing(_connect(self._path)) as conn:
            rows = conn.execute("SELECT la_code, max(received_at) FROM records GROUP BY la_code").fetchall()
        return {la: datetime.fromisoformat(ts) for la, ts in rows}

    def get(self, la_code: str, record_key: str) -> StoredRecord | None:
        with closing(_connect(self._path)) as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM records WHERE la_code = ? AND record_key = ? AND withdrawn = 0",  # noqa: S608
                (la_code, record_key),
            ).fetchone()
        return _stored(row) if row else None

    def count_in_scope(self, la_code: str, period_start: date, period_end: date) -> int:
        with closing(_connect(self._path)) as conn:
            sql, params = _scope_query(la_code, period_start, period_end, count=True)
            return int(conn.execute(sql, params).fetchone()[0])

    def iter_left_out(
        self, la_code: str, period_start: date, period_end: date, *, batch: int = 2000
    ) -> Iterator[HeldOut]:
        """The held records of the LA that are not in the period's file (``iter_in_scope``'s complement), by
        record key, with what ``scope.left_out_reason`` needs to say why."""
        conn = _connect(self._path)
        try:
            conn.execute("BEGIN")
            sql, params = _left_out_query(la_code, period_start, period_end)
            cur = conn.execute(sql, params)
            while rows := cur.fetchmany(batch):
                for key, kind, start, end, death, rec in rows:
                    ref = json.loads(rec).get("event_reference")
                    yield HeldOut(
                        record_key=key,
                        kind=Kind(kind),
                        start=date.fromisoformat(start) if start else None,
                        derived_end=date.fromisoformat(end) if end else None,
                        death=date.fromisoformat(death) if death else None,
                        event_reference=ref.strip() if isinstance(ref, str) and ref.strip() else None,
                    )
            conn.execute("COMMIT")
        finally:
            conn.close()

    def iter_in_scope(
        self, la_code: str, period_start: date, period_end: date, *, batch: int = 2000
    ) -> Iterator[StoredRecord]:
        """Stream the in-scope records, ordered by record key, from one consistent snapshot."""
        if period_end < period_start:
            raise ValueError("period end is before period start")
        conn = _connect(self._path)
        try:
            conn.execute("BEGIN")  # one read transaction: a snapshot while the consumer writes
            sql, params = _scope_query(la_code, period_start, period_end, count=False)
            cur = conn.execute(sql, params)
            while rows := cur.fetchmany(batch):
                for row in rows:
                    yield _stored(row)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def iter_in_scope_batches(
        self, la_code: str, period_start: date, period_end: date, *, batch: int = 2000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The in-scope records as ``iter_in_scope`` streams them (ordered by record key, one snapshot), a batch of
        stored rows at a time, undecoded (``_COLUMNS`` order: the record and its findings as stored JSON text):
        assembly decodes a batch at once (``frames.decode``) instead of a record at a time."""
        if period_end < period_start:
            raise ValueError("period end is before period start")
        conn = _connect(self._path)
        try:
            # One pass in key order over the index: a large page cache would only hold pages read once.
            conn.execute("PRAGMA cache_size=-8192")  # 8 MiB
            conn.execute("BEGIN")  # one read transaction: a snapshot while the consumer writes
            sql, params = _scope_query(la_code, period_start, period_end, count=False)
            cur = conn.execute(sql, params)
            while rows := cur.fetchmany(batch):
                yield rows
            conn.execute("COMMIT")
        finally:
            conn.close()


RECORD_COLUMNS: Final = (
    "la_code, record_key, kind, event_type, client_type, person_key, start_date, der_end_date, death_date, "
    "event_id, source, kafka_partition, kafka_offset, received_at, withdrawn, opt_out, opt_outs, failed, "
    "content_hash, record_json, findings_json"
)
"""The columns of a ``records`` row as both engines write it (``record_row``'s order)."""


def record_row(
    ev: RecordValidated, ident: Identity, item: Incoming, received_at: str, canonical: str
) -> tuple[object, ...]:
    """One ``records`` row (``RECORD_COLUMNS`` order) for a validated event, for either engine. Findings are
    (field, rule, validity, status, message, fix): the last three for the submission's DQ report page (a message or
    fix never holds a value from the record: ``Finding``). Rows stored before keep three or five; readers accept
    each."""
    findings = [
        [f.field, f.rule, f.validity.value, f.status.value, f.message, f.fix or ""]
        for f in ev.findings
        if f.validity.failed
    ]
    flags = opt_outs_of(ev)
    return (
        ev.la_code,
        ident.record_key,
        ident.kind.value,
        ident.event_type,
        ident.client_type,
        ident.person_key,
        _iso(ident.start),
        _iso(ident.derived_end),
        _iso(ident.death),
        ev.provenance.event_id,
        ev.provenance.source,
        item.partition,
        item.offset,
        received_at,
        int(ev.withdrawn),
        int(bool(flags)),
        _flags_text(flags),
        int(ev.failed),
        ident.content_hash,
        "{}" if ev.withdrawn else canonical,
        json.dumps(findings, separators=(",", ":")),
    )


_COLUMNS: Final = (
    "record_key, kind, event_type, client_type, person_key, start_date, der_end_date, record_json, "
    "findings_json, failed, opt_out, content_hash, event_id, opt_outs, source"
)


def _scope_query(la_code: str, start: date, end: date, *, count: bool) -> tuple[str, dict[str, str]]:
    body, params = _scope_body(la_code, start, end)
    if count:
        return f"SELECT count(*) FROM ({body})", params  # noqa: S608
    return f"{body} ORDER BY r.record_key", params


def _left_out_query(la_code: str, start: date, end: date) -> tuple[str, dict[str, str]]:
    """The held (not withdrawn) records of the LA that the scope query leaves out, with their scope facts: one
    pass testing the scope condition on each row (``IS NOT 1``: false or unknown), not a second scope query
    materialised for ``NOT IN``."""
    condition, params = _scope_condition(la_code, start, end, table="o")
    return (
        "SELECT o.record_key, o.kind, o.start_date, o.der_end_date, o.death_date, o.record_json FROM records o "  # noqa: S608
        f"WHERE o.la_code = :la AND o.withdrawn = 0 AND ({condition}) IS NOT 1 "
        "ORDER BY o.record_key",
        params,
    )


def _scope_body(la_code: str, start: date, end: date) -> tuple[str, dict[str, str]]:
    condition, params = _scope_condition(la_code, start, end, table="r")
    cols = ", ".join(f"r.{c.strip()}" for c in _COLUMNS.split(","))
    return f"SELECT {cols} FROM records r WHERE {condition}", params  # noqa: S608


def _scope_condition(la_code: str, start: date, end: date, *, table: str) -> tuple[str, dict[str, str]]:
    """Whether the row of ``table`` is in the period's file (the scope rules), as an SQL condition."""
    # S608 below: the SQL is built from constant fragments only; every value is a bound parameter.
    # Dates are ISO strings, so text comparison is date comparison.
    params = {"la": la_code, "ps": start.isoformat(), "pe": end.isoformat()}
    alive = (
        "{t}.la_code = :la AND {t}.withdrawn = 0 AND NOT ({t}.death_date IS NOT NULL AND ({t}.death_date < :ps "
        "OR ({t}.start_date IS NOT NULL AND {t}.death_date < {t}.start_date)))"
    )
    active = (
        # R-SCOPE-1/2, R-FIL-1: completed in the period (open requests/assessments/reviews are out).
        "(({t}.kind = 'event' AND {t}.der_end_date IS NOT NULL AND {t}.der_end_date BETWEEN :ps AND :pe "
        "  AND ({t}.start_date IS NULL OR {t}.start_date <= :pe))"
        # R-SCOPE-1, R-FIL-2: services active at any time in the period, open ones included.
        " OR ({t}.kind = 'service' AND ({t}.start_date IS NULL OR {t}.start_date <= :pe) "
        "  AND ({t}.der_end_date IS NULL OR {t}.der_end_date >= :ps))"
        " OR {t}.kind = 'undetermined')"
    )
    t = table
    # S608: constant fragments and a table alias chosen by the caller, never a value.
    condition = (
        f"{alive.format(t=t)} AND ("  # noqa: S608
        f"{active.format(t=t)}"
        f" OR ({t}.kind = 'carer_by_association' AND ("
        f"  NOT EXISTS (SELECT 1 FROM links l WHERE l.la_code = {t}.la_code AND l.record_key = {t}.record_key)"
        "  OR EXISTS (SELECT 1 FROM links l CROSS JOIN records e"  # CROSS JOIN: SQLite keeps l outermost
        "   ON e.la_code = l.la_code AND e.person_key = l.linked_person_key"
        f"   WHERE l.la_code = {t}.la_code AND l.record_key = {t}.record_key AND {alive.format(t='e')}"
        f"   AND {active.format(t='e')}))))"
    )
    return condition, params


def _stored(row: tuple[Any, ...]) -> StoredRecord:
    (
        key,
        kind,
        event_type,
        client_type,
        person,
        start,
        end,
        rec,
        findings,
        failed,
        opt_out,
        chash,
        ev_id,
        flags,
        src,
    ) = row
    parsed = json.loads(findings)
    return StoredRecord(
        record_key=key,
        kind=Kind(kind),
        event_type=event_type,
        client_type=client_type,
        person_key=person,
        start=date.fromisoformat(start) if start else None,
        derived_end=date.fromisoformat(end) if end else None,
        record=json.loads(rec),
        findings=tuple((f[0], f[1], f[2]) for f in parsed),
        finding_notes=tuple(
            (str(f[3]), str(f[4]), str(f[5]) if len(f) >= 6 else "") if len(f) >= 5 else ("", "", "") for f in parsed
        ),
        failed=bool(failed),
        opt_out=bool(opt_out),
        content_hash=chash,
        event_id=ev_id,
        opt_outs=parse_opt_out_header(flags) if flags else frozenset(),
        source=src or "",
    )


def _unambiguous(source: str, form_source: str, senders: set[str]) -> bool:
    """Whether the only pseudonymised form of an event id (of ``form_source``) is the record's (of ``source``),
    one of the two being unknown (''). ``senders``: the sources of the LA known to have sent the event id."""
    if source:  # a form kept from before sources were recorded: nobody but this record's source sent the id
        return senders <= {source}
    if form_source:  # a record applied before sources were recorded: the form's source is known to have sent it
        return senders == {form_source}
    return len(senders) <= 1  # both unknown (the behaviour before the upgrade): not known to be shared


def _is_newer(item: Incoming, received_at: str, existing: tuple[Any, ...]) -> bool:
    """R: a later version replaces the earlier; within a partition the Kafka offset decides."""
    old_partition, old_offset, old_received = existing[0], existing[1], existing[2]
    same_partition = item.partition is not None and item.partition == old_partition
    if same_partition and item.offset is not None and old_offset is not None:
        return bool(item.offset >= old_offset)  # equal: the later arrival wins (in-memory test broker)
    new_ts = datetime.fromisoformat(received_at)
    old_ts = datetime.fromisoformat(old_received)
    return new_ts >= old_ts
