"""PostgreSQL for the submission service's state when it scales out (issue 12): connections, migrations, faults.

``CLD_SUBMISSION_DATABASE_URL`` (``postgresql://...``) selects PostgreSQL for both the record state
(``pg_record_store.PgStateStore``) and the submissions repository (``pg_repository.PgRepository``); unset, the service
keeps its embedded SQLite files in the state directory (``stores.open_stores``).

- ``open_pool``: a psycopg 3 connection pool (autocommit connections; every write opens its own transaction);
- ``migrate``: the numbered SQL files of ``migrations/postgres/`` applied in order, each recorded in
  ``schema_migrations``, inside one transaction holding an advisory lock, so several instances starting together
  apply each migration exactly once (the others wait for the lock, then find nothing left to do);
- ``is_pg_fault``: which psycopg errors are the database's (a lost connection, a server shutting down, a
  serialisation failure or deadlock: retried) rather than the record's.

The URL carries a password: it is never logged (``redacted`` gives the host, port and database only).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Final
from urllib.parse import urlsplit

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from cld_runtime.settings import StartupError

MIGRATIONS_PACKAGE: Final = "cld_submission.adapters.migrations.postgres"
MIGRATION_LOCK: Final = 0x434C445F4D494752  # 'CLD_MIGR': pg_advisory_xact_lock key while migrating
OUTBOX_LOCK: Final = 0x434C445F4F555442  # 'CLD_OUTB': pg_try_advisory_lock key of the one outbox drainer
_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and urlsplit(url or "").scheme in ("postgresql", "postgres")


def redacted(url: str) -> str:
    """host:port/database of a URL, without the user or password (for logs and errors)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration, in version order."""
    out: list[tuple[int, str, str]] = []
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    out.sort()
    versions = [v for v, _, _ in out]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two PostgreSQL migrations share a version number")
    return out


def migrate(conn: psycopg.Connection[tuple[object, ...]]) -> list[int]:
    """Apply the migrations not applied yet; returns the versions applied now. Safe to run from several
    instances at once: the advisory lock makes them take turns, and each finds what the others applied."""
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {int(str(r[0])) for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, name, sql in migrations():
            if version in done:
                continue
            conn.execute(sql.encode("utf-8"))
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
            applied.append(version)
    return applied


def applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> list[int]:
    rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    return [int(str(r[0])) for r in rows]


def open_pool(url: str, *, min_size: int = 1, max_size: int = 8, name: str = "cld-submission") -> ConnectionPool:
    """A pool of autocommit connections to ``url``, opened (waits, bounded, for the first connection). One direct
    connection first, so that a server not reachable or a wrong password fails at once with the server's reason
    (rather than a pool timeout)."""
    psycopg.connect(url, connect_timeout=10).close()
    pool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True},
        name=name,
        open=False,
        check=ConnectionPool.check_connection,
    )
    pool.open(wait=True, timeout=30)
    return pool


def database_problem(url: str | None, exc: Exception) -> Exception:
    """A database that cannot be used at start, as one clear line (``StartupError``: host, port and database,
    the error's class and first line; never the password). Anything not the database's is returned as is."""
    if not isinstance(exc, psycopg.Error) or not url:
        return exc
    first = (str(exc).splitlines() or [""])[0][:200]
    return StartupError(f"the database {redacted(url)} cannot be used: {type(exc).__name__}: {first}")


def is_pg_fault(exc: BaseException) -> bool:
    """Whether a psycopg error may pass on a retry (the server or the connection, not the record)."""
    return isinstance(
        exc,
        psycopg.OperationalError
        | psycopg.errors.SerializationFailure
        | psycopg.errors.DeadlockDetected
        | psycopg.errors.AdminShutdown
        | psycopg.errors.DiskFull
        | psycopg.errors.InsufficientResources,
    )  # psycopg_pool.PoolTimeout is an OperationalError
