"""Versioned schema migrations of the SQLite files (issue 12), as PostgreSQL has them (``pg.migrate``).

Each database file records what was applied in its own ``schema_migrations`` table. Version 1 is the baseline:
the schema as the adapter's code creates it (``CREATE ... IF NOT EXISTS``), recorded once it has run; the in-code
upgrades of files written before versions were recorded (``StateStore._migrate``, ``Repository._init_schema``)
still run at every start (cheap, idempotent column checks). Later versions are
numbered SQL files in ``migrations/sqlite/<database>/NNNN_name.sql``, each applied in one ``BEGIN IMMEDIATE``
transaction (the file's write lock: two processes opening one file take turns, and the second finds the version
applied and skips it).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Final

from .storage import rollback_quietly

_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
BASELINE: Final = 1


def sqlite_migrations(database: str) -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of the numbered files for ``database`` ('records', 'submissions'), in order."""
    out: list[tuple[int, str, str]] = []
    for entry in resources.files(f"cld_submission.adapters.migrations.sqlite.{database}").iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    out.sort()
    if any(v <= BASELINE for v, _, _ in out):
        raise RuntimeError("SQLite migration files start at 0002 (0001 is the baseline in code)")
    return out


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def migrate_sqlite(conn: sqlite3.Connection, database: str, baseline: Callable[[], object]) -> list[int]:
    """Bring one SQLite file up to date; returns the versions applied now (``conn``: autocommit mode)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at TEXT NOT NULL)"
    )
    applied: list[int] = []
    if not _done(conn, BASELINE):
        baseline()
        conn.execute(
            "INSERT OR IGNORE INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (BASELINE, "baseline (the adapter's schema in code)", datetime.now(UTC).isoformat()),
        )
        applied.append(BASELINE)
    for version, name, sql in sqlite_migrations(database):
        if _done(conn, version):
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not _done(conn, version):  # another process may have applied it while we waited for the lock
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, datetime.now(UTC).isoformat()),
                )
                applied.append(version)
            conn.execute("COMMIT")
        except BaseException:
            rollback_quietly(conn)
            raise
    return applied


def _done(conn: sqlite3.Connection, version: int) -> bool:
    return conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone() is not None


def applied_sqlite_versions(conn: sqlite3.Connection) -> list[int]:
    return [int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
