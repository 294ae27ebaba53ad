"""Which engine holds the submission service's state (issue 12): one setting, ``CLD_SUBMISSION_DATABASE_URL``.

Unset: SQLite files in the state directory (``state.StateStore``, ``repository.Repository``), the embedded
default for one instance per state volume. ``postgresql://...``: PostgreSQL for both (``pg_state.PgStateStore``,
``pg_repository.PgRepository``), migrated at start, shared by any number of instances. Submission files, the
audit log and the record-key secret's seed stay in the state directory either way.
"""

from __future__ import annotations

from pathlib import Path

from .pg import is_postgres_url
from .ports import RecordStore, SubmissionsRepository
from .repository import Repository
from .state import StateStore


def open_record_store(state_dir: Path, database_url: str | None = None) -> RecordStore:
    if database_url and is_postgres_url(database_url):
        from .pg_state import PgStateStore

        return PgStateStore.open(database_url, state_dir)
    if database_url:
        raise ValueError("CLD_SUBMISSION_DATABASE_URL must be a postgresql:// URL (unset: SQLite in the state dir)")
    return StateStore.open(state_dir)


def open_repository(state_dir: Path, database_url: str | None = None) -> SubmissionsRepository:
    if database_url and is_postgres_url(database_url):
        from .pg_repository import PgRepository

        return PgRepository.open(database_url)
    if database_url:
        raise ValueError("CLD_SUBMISSION_DATABASE_URL must be a postgresql:// URL (unset: SQLite in the state dir)")
    return Repository(state_dir)
