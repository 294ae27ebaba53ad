"""Personal data at rest is private (issue 10, finding 4): the submission service's state, submission files, audit
log and exports are 0600 files in 0700 folders, whatever umask it was started with, and files left 0644 by an
earlier version are tightened at start."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cld_submission.adapters.sqlite_record_store import StateStore
from tests.component.test_submission_service import ADA, GRACE, PERIOD, Harness, harness, rows  # noqa: F401


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """Start as a careless deployment would: umask 022 (files 0644, folders 0755)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    out = {str(root): stat.S_IMODE(root.stat().st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
    return out


async def test_state_files_and_exports_are_0600_in_0700_folders(harness: Harness) -> None:  # noqa: F811
    for r in rows(3):
        await harness.send_record(r)
    resp = await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    assert resp.status_code == 201, resp.text
    sid = resp.json()["submission"]["submission_id"]
    approved = await harness.client.post(f"/v1/submissions/{sid}/approve", json={"by": GRACE})
    assert approved.status_code == 200, approved.text
    async with asyncio.timeout(10):
        await harness.workflow.join()

    found = {**modes(harness.state_dir), **{f"export:{k}": v for k, v in modes(harness.export_dir).items()}}
    names = set(found)
    assert {"records.sqlite3", "submissions.sqlite3", "audit.jsonl", "record-key.secret"} <= names
    assert any(n.startswith("files/") and n.endswith(".csv") for n in names), names
    assert any(n.startswith("export:") and n.endswith(".csv") for n in names), names
    assert any(n.endswith("-wal") for n in names), names
    loose = {n: oct(m) for n, m in found.items() if m & 0o077}
    assert loose == {}


def test_files_left_open_by_an_earlier_version_are_tightened_at_start(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    StateStore.open(state_dir).close()  # under umask 022, as before the fix
    os.chmod(state_dir, 0o755)  # noqa: S103 - the permissive mode of before the fix
    os.chmod(state_dir / "records.sqlite3", 0o644)
    StateStore.open(state_dir).close()
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "records.sqlite3").stat().st_mode) == 0o600
