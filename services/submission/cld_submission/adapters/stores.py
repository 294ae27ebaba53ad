"""Opening the state storage of one process: the record store and the submissions repository, on the engine one
setting chooses (issue 12: ``CLD_SUBMISSION_DATABASE_URL``), or one clear start-up error instead of a traceback.

Unset: SQLite files in the state directory (``sqlite_record_store.StateStore``, ``sqlite_repository.Repository``),
the embedded default for one instance per state volume. ``postgresql://...``: PostgreSQL for both
(``pg_record_store.PgStateStore``, ``pg_repository.PgRepository``), migrated at start, shared by any number of
instances. Submission files, the audit log and the record-key secret's seed stay in the state directory either way.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cld_runtime.files import private_dir

from .pg import database_problem, is_postgres_url
from .ports import RecordStore, SubmissionsRepository
from .sqlite_record_store import StateStore
from .sqlite_repository import Repository
from .storage import StorageUnavailableError, fault_cause, folder_problem

_NOT_POSTGRES = "CLD_SUBMISSION_DATABASE_URL must be a postgresql:// URL (unset: SQLite in the state dir)"


def open_record_store(state_dir: Path, database_url: str | None = None) -> RecordStore:
    if database_url and is_postgres_url(database_url):
        from .pg_record_store import PgStateStore

        return PgStateStore.open(database_url, state_dir)
    if database_url:
        raise ValueError(_NOT_POSTGRES)
    return StateStore.open(state_dir)


def open_repository(state_dir: Path, database_url: str | None = None) -> SubmissionsRepository:
    if database_url and is_postgres_url(database_url):
        from .pg_repository import PgRepository

        return PgRepository.open(database_url)
    if database_url:
        raise ValueError(_NOT_POSTGRES)
    return Repository(state_dir)


def open_stores(state_dir: Path, database_url: str | None = None) -> tuple[RecordStore, SubmissionsRepository]:
    """The record state and the submissions repository, or one clear error (read-only, permission, full; a
    database that cannot be reached or logged in to: host, port and database named, never the password)."""
    try:
        private_dir(state_dir)
        state = open_record_store(state_dir, database_url)
    except (sqlite3.Error, OSError) as exc:
        raise StorageUnavailableError(state_dir, folder_problem(state_dir) or fault_cause(exc)) from None
    except Exception as exc:
        raise database_problem(database_url, exc) from None
    try:
        repo = open_repository(state_dir, database_url)
    except (sqlite3.Error, OSError) as exc:
        state.close()
        raise StorageUnavailableError(state_dir, folder_problem(state_dir) or fault_cause(exc)) from None
    except Exception as exc:
        state.close()
        raise database_problem(database_url, exc) from None
    return state, repo
