"""Opening the state storage of one process: the record store and the submissions repository (SQLite today, in
the state directory), or one clear start-up error (read-only, permission, full) instead of a traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cld_runtime.files import private_dir

from .sqlite_record_store import StateStore
from .sqlite_repository import Repository
from .storage import StorageUnavailableError, fault_cause, folder_problem


def open_sqlite_stores(state_dir: Path) -> tuple[StateStore, Repository]:
    """The record state and the submissions database, or one clear error (read-only, permission, full)."""
    try:
        private_dir(state_dir)
        state = StateStore.open(state_dir)
    except (sqlite3.Error, OSError) as exc:
        raise StorageUnavailableError(state_dir, folder_problem(state_dir) or fault_cause(exc)) from None
    try:
        repo = Repository(state_dir)
    except (sqlite3.Error, OSError) as exc:
        state.close()
        raise StorageUnavailableError(state_dir, folder_problem(state_dir) or fault_cause(exc)) from None
    return state, repo
