"""Several submission instances sharing one state folder append to one audit log (issue 12): the chain stays one
chain, every entry kept once, in the order the file lock gave them."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from cld_submission.adapters.audit_log import AuditLog, read_audit_log, verify_audit_log

PER_WRITER = 60


def _append_many(path: str, writer: str) -> None:
    log = AuditLog(Path(path))  # opened before the other writer's lines exist, like an instance at start
    for i in range(PER_WRITER):
        log.append("requested", submission_id=f"{writer}-{i}", actor=writer)


def test_two_processes_appending_to_one_log_keep_one_verified_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_append_many, args=(str(path), name)) for name in ("a", "b")]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
        assert w.exitcode == 0
    check = verify_audit_log(path)
    assert check.ok, check.reason
    assert check.lines == 2 * PER_WRITER
    ids = [e["submission_id"] for e in read_audit_log(path)]
    assert sorted(ids) == sorted(f"{w}-{i}" for w in ("a", "b") for i in range(PER_WRITER))
    for w in ("a", "b"):  # each writer's own entries in its own order
        assert [i for i in ids if i.startswith(f"{w}-")] == [f"{w}-{i}" for i in range(PER_WRITER)]


def test_an_open_log_chains_onto_lines_another_writer_added(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first, second = AuditLog(path), AuditLog(path)
    first.append("requested", submission_id="s1")
    second.append("approved", submission_id="s1")  # second opened before s1's line existed
    first.append("sent", submission_id="s1")
    check = verify_audit_log(path)
    assert check.ok
    assert check.lines == 3
    assert [e["action"] for e in read_audit_log(path)] == ["requested", "approved", "sent"]


def test_a_line_edited_by_someone_else_is_refused_not_chained_onto(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first, second = AuditLog(path), AuditLog(path)
    first.append("requested", submission_id="s1")
    with path.open("ab") as f:  # a line appended by hand, not by an AuditLog
        f.write(b'{"seq":2,"prev":"forged","action":"approved"}\n')
    with pytest.raises(RuntimeError, match="fails verification"):
        second.append("approved", submission_id="s1")
