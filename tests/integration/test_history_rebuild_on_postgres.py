"""``rebuild-history`` into PostgreSQL (issue 12): the lifecycle events a service published (its state in SQLite,
``tests/component/test_submission_history_rebuild.py``'s harness) are replayed into an empty PostgreSQL database;
the history is the same, nothing is queued to publish again, and a second restore into it is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from cld_submission.adapters.stores import open_repository
from cld_submission.entrypoints.rebuild_history import HistoryNotEmptyError, restore
from tests.component import test_submission_history_rebuild as history
from tests.component.test_submission_service import Harness

pytestmark = pytest.mark.integration
harness = history.harness


async def test_history_is_rebuilt_into_an_empty_postgresql_database(
    harness: Harness, tmp_path: Path, fresh_database: str
) -> None:
    v1, v2, _ = await history._a_year_of_submissions(harness)
    original = harness.workflow.history(None)
    events = history._as_read(harness)

    rebuilt_dir = tmp_path / "rebuilt"
    restored = restore([events], state_dir=rebuilt_dir, topic=history.TOPIC, database_url=fresh_database)
    assert restored.replayed.refused == []
    assert restored.audit.ok
    repo = open_repository(rebuilt_dir, fresh_database)
    try:
        assert repo.history() == original
        assert repo.pending_events() == []
    finally:
        repo.close()
    assert not (rebuilt_dir / "submissions.sqlite3").exists()
    by_id = {s.submission_id: s for s in original}
    assert by_id[v1].superseded_by == v2
    with pytest.raises(HistoryNotEmptyError):
        restore([events], state_dir=tmp_path / "again", topic=history.TOPIC, database_url=fresh_database)
