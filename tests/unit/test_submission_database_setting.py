"""``CLD_SUBMISSION_DATABASE_URL``: which engine it selects, and a database that cannot be used at start (one clear
line naming host, port and database, never the password)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cld_runtime.settings import StartupError
from cld_submission.adapters.pg import is_postgres_url, redacted
from cld_submission.adapters.sqlite_record_store import StateStore
from cld_submission.adapters.sqlite_repository import Repository
from cld_submission.adapters.stores import open_record_store, open_repository, open_stores
from cld_submission.entrypoints.settings import SubmissionSettings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unset_is_sqlite_in_the_state_dir(tmp_path: Path) -> None:
    store, repo = open_record_store(tmp_path), open_repository(tmp_path)
    try:
        assert isinstance(store, StateStore)
        assert isinstance(repo, Repository)
        assert (tmp_path / "records.sqlite3").exists()
    finally:
        store.close()
        repo.close()


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLD_SUBMISSION_DATABASE_URL", "postgresql://cld:s3cret@db.example:5433/cld")
    settings = SubmissionSettings()
    assert settings.database_url == "postgresql://cld:s3cret@db.example:5433/cld"
    assert "s3cret" not in repr(settings)
    assert is_postgres_url(settings.database_url)
    assert redacted(settings.database_url) == "db.example:5433/cld"


def test_a_url_of_another_engine_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        open_record_store(tmp_path, "mysql://x@127.0.0.1/db")


def test_a_database_not_reachable_stops_the_start_with_one_line_without_the_password(tmp_path: Path) -> None:
    port = _closed_port()
    url = f"postgresql://cld:s3cret-pw@127.0.0.1:{port}/cld"
    with pytest.raises(StartupError) as caught:
        open_stores(tmp_path / "state", url)
    message = str(caught.value)
    assert f"127.0.0.1:{port}/cld" in message
    assert "s3cret-pw" not in message
    assert "\n" not in message
    assert not (tmp_path / "state" / "records.sqlite3").exists()
