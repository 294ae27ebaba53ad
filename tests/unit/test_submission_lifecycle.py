"""Lifecycle state machine, request idempotency/versioning, the chained audit log, deadlines."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from cld_schemas.events import SubmissionState
from cld_submission.adapters.audit_log import AuditLog, read_audit_log, verify_audit_log
from cld_submission.adapters.metrics import SubmissionMetrics
from cld_submission.domain.deadlines import (
    DeadlineRule,
    covers_next_deadline,
    days_remaining,
    next_deadline,
    seconds_remaining,
)
from cld_submission.domain.lifecycle import (
    Existing,
    NewVersion,
    PeriodError,
    Submission,
    TransitionRefusedError,
    advance,
    approve,
    check_period,
    decide_request,
    new_submission,
)

S = SubmissionState
AT = datetime(2025, 4, 20, 10, 0, tzinfo=UTC)
P_START, P_END = date(2024, 4, 1), date(2025, 3, 31)


def requested(sid: str = "s1", **kw: object) -> Submission:
    sub, _ = new_submission(
        submission_id=sid,
        la_code="318",
        period_start=P_START,
        period_end=P_END,
        requested_by="Ada Operator",
        at=AT,
        **kw,  # type: ignore[arg-type]
    )
    return sub


def checked(sid: str = "s1", sha: str = "a" * 64, **kw: object) -> Submission:
    sub, _ = advance(requested(sid, **kw), S.ASSEMBLED, at=AT, file_sha256=sha, rows=10)
    sub, _ = advance(sub, S.CHECKED, at=AT)
    return sub


def test_the_happy_path_emits_one_event_per_step() -> None:
    sub, e1 = new_submission(
        submission_id="s1", la_code="318", period_start=P_START, period_end=P_END, requested_by="Ada", at=AT
    )
    sub, e2 = advance(sub, S.ASSEMBLED, at=AT, file_sha256="f" * 64, rows=3)
    sub, e3 = advance(sub, S.CHECKED, at=AT)
    sub, e4 = approve(sub, by="Grace Approver", at=AT)
    sub, e5 = advance(sub, S.SENT, at=AT, message_id="MSG1")
    sub, e6 = advance(sub, S.ACKNOWLEDGED, at=AT)
    assert [e.state for e in (e1, e2, e3, e4, e5, e6)] == [
        S.REQUESTED,
        S.ASSEMBLED,
        S.CHECKED,
        S.APPROVED,
        S.SENT,
        S.ACKNOWLEDGED,
    ]
    assert e4.by == "Grace Approver"
    assert sub.approved_by == "Grace Approver"
    assert e5.message_id == "MSG1"
    assert e6.file_sha256 == "f" * 64
    assert e6.rows == 3
    assert e1.by == "Ada"


@pytest.mark.parametrize("state", [S.REQUESTED, S.ASSEMBLED, S.APPROVED, S.SENT, S.ACKNOWLEDGED, S.FAILED])
def test_approval_refuses_anything_not_checked(state: SubmissionState) -> None:
    sub = checked().model_copy(update={"state": state})
    with pytest.raises(TransitionRefusedError, match="only a checked submission"):
        approve(sub, by="Grace", at=AT)


def test_approval_needs_a_named_operator() -> None:
    with pytest.raises(TransitionRefusedError, match="name the operator"):
        approve(checked(), by="  ", at=AT)


def test_approval_cannot_be_reached_through_advance() -> None:
    with pytest.raises(TransitionRefusedError):
        advance(checked(), S.APPROVED, at=AT)


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (S.REQUESTED, S.SENT),
        (S.CHECKED, S.SENT),
        (S.APPROVED, S.SUPERSEDED),  # an approved file may be leaving: never superseded
        (S.SENT, S.SUPERSEDED),
        (S.ACKNOWLEDGED, S.FAILED),
        (S.SUPERSEDED, S.CHECKED),
        (S.FAILED, S.SENT),
    ],
)
def test_illegal_steps_are_refused(start: SubmissionState, to: SubmissionState) -> None:
    sub = checked().model_copy(update={"state": start})
    with pytest.raises(TransitionRefusedError):
        advance(sub, to, at=AT)


def test_requesting_the_same_content_again_returns_the_existing_submission() -> None:
    sent = checked("s1", sha="a" * 64).model_copy(update={"state": S.SENT})
    decision = decide_request([sent], la_code="318", period_start=P_START, period_end=P_END, file_sha256="a" * 64)
    assert decision == Existing(sent)


def test_different_content_is_a_new_linked_version_superseding_the_unsent_one() -> None:
    old = checked("s1", sha="a" * 64)
    decision = decide_request([old], la_code="318", period_start=P_START, period_end=P_END, file_sha256="b" * 64)
    assert isinstance(decision, NewVersion)
    assert decision.version == 2
    assert decision.supersedes == "s1"
    assert decision.supersede == (old,)


def test_a_sent_version_is_linked_but_not_superseded() -> None:
    sent = checked("s1", sha="a" * 64).model_copy(update={"state": S.ACKNOWLEDGED})
    decision = decide_request([sent], la_code="318", period_start=P_START, period_end=P_END, file_sha256="b" * 64)
    assert isinstance(decision, NewVersion)
    assert decision.supersedes == "s1"
    assert decision.supersede == ()


def test_a_resubmission_while_a_version_is_being_sent_is_refused() -> None:
    approved = checked("s1", sha="a" * 64).model_copy(update={"state": S.APPROVED})
    with pytest.raises(TransitionRefusedError, match="being sent"):
        decide_request([approved], la_code="318", period_start=P_START, period_end=P_END, file_sha256="b" * 64)


def test_same_content_after_a_failure_is_a_new_version() -> None:
    failed = checked("s1", sha="a" * 64).model_copy(update={"state": S.FAILED})
    decision = decide_request([failed], la_code="318", period_start=P_START, period_end=P_END, file_sha256="a" * 64)
    assert isinstance(decision, NewVersion)
    assert decision.version == 2


def test_other_periods_and_las_do_not_count() -> None:
    other = checked("s1", sha="a" * 64).model_copy(update={"period_start": date(2024, 1, 1)})
    decision = decide_request([other], la_code="318", period_start=P_START, period_end=P_END, file_sha256="a" * 64)
    assert decision == NewVersion(version=1, supersedes=None, supersede=())


# -- audit log ------------------------------------------------------------------------------------------


def test_audit_log_chain_verifies_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append("requested", submission_id="s1", by="Ada", file_sha256="a" * 64, rows=10)
    log.append("approved", submission_id="s1", by="Grace")
    again = AuditLog(path)  # a restart continues the same chain
    again.append("sent", submission_id="s1", message_id="MSG1", outcome="sent")
    check = verify_audit_log(path)
    assert check.ok
    assert check.lines == 3
    entries = read_audit_log(path, submission_id="s1")
    assert [e["action"] for e in entries] == ["requested", "approved", "sent"]
    assert entries[1]["by"] == "Grace"
    assert entries[2]["message_id"] == "MSG1"


def test_audit_log_tampering_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for who in ("Ada", "Grace", "Linus"):
        log.append("approved", submission_id="s1", by=who)
    lines = path.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[1])
    entry["by"] = "Mallory"
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    check = verify_audit_log(path)
    assert not check.ok
    assert check.first_bad_line == 2
    with pytest.raises(RuntimeError, match="fails verification"):
        AuditLog(path)


def test_audit_log_edit_with_a_recomputed_entry_hash_still_breaks_the_chain(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for who in ("Ada", "Grace", "Linus"):
        log.append("approved", submission_id="s1", by=who)
    lines = path.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[1])
    entry["by"] = "Mallory"
    body = {k: v for k, v in entry.items() if k != "self"}
    entry["self"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    check = verify_audit_log(path)
    assert not check.ok
    assert check.first_bad_line == 3


def test_audit_log_edit_of_the_last_line_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append("requested", submission_id="s1", by="Ada")
    log.append("sent", submission_id="s1", message_id="MSG1")
    path.write_bytes(path.read_bytes().replace(b"MSG1", b"MSG2"))
    check = verify_audit_log(path)
    assert not check.ok
    assert check.first_bad_line == 2


def test_audit_log_removed_line_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for i in range(3):
        log.append("requested", submission_id=f"s{i}")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[2])
    check = verify_audit_log(path)
    assert not check.ok
    assert check.first_bad_line == 2


# -- deadlines ------------------------------------------------------------------------------------------


def test_default_deadline_is_one_month_after_quarter_end() -> None:
    assert next_deadline(date(2025, 5, 10), DeadlineRule()) == (date(2025, 7, 31), date(2025, 6, 30))
    assert next_deadline(date(2025, 4, 30), DeadlineRule()) == (date(2025, 4, 30), date(2025, 3, 31))
    assert next_deadline(date(2025, 11, 1), DeadlineRule()) == (date(2026, 1, 31), date(2025, 12, 31))
    assert days_remaining(date(2025, 7, 1), DeadlineRule()) == 30


def test_seconds_remaining_run_to_the_end_of_the_deadline_day() -> None:
    """The base unit of cld_submission_deadline_remaining_seconds: the window closes at midnight (UTC) after
    the deadline day, so on the deadline day itself some seconds remain."""
    assert seconds_remaining(datetime(2025, 7, 1, tzinfo=UTC), DeadlineRule()) == 31 * 86400
    assert seconds_remaining(datetime(2025, 7, 31, 18, 0, tzinfo=UTC), DeadlineRule()) == 6 * 3600
    assert seconds_remaining(datetime(2025, 7, 31, 18, 0), DeadlineRule()) == 6 * 3600  # naive = UTC


def test_sent_submissions_are_counted_by_transport() -> None:
    """Only a transport that acknowledges can leave a submission 'not acknowledged' (the alert uses mesh)."""
    registry = CollectorRegistry()
    metrics = SubmissionMetrics(registry)
    sent_mesh = checked("m").model_copy(update={"state": S.SENT, "transport": "mesh"})
    sent_file = checked("f").model_copy(update={"state": S.SENT, "transport": "file_export"})
    metrics.set_sent(
        [sent_mesh, sent_file, sent_file.model_copy(update={"submission_id": "f2"}), checked("c")], ["319"]
    )

    def value(la: str, transport: str) -> float | None:
        return registry.get_sample_value("cld_submissions_sent_by_transport", {"la_code": la, "transport": transport})

    assert value("318", "mesh") == 1
    assert value("318", "file_export") == 2
    assert value("319", "mesh") == 0


def test_explicit_deadline_dates_replace_the_rule() -> None:
    rule = DeadlineRule(dates=(date(2025, 8, 15), date(2025, 11, 14)))
    assert next_deadline(date(2025, 8, 1), rule) == (date(2025, 8, 15), date(2025, 6, 30))


def test_an_approved_submission_reaching_the_quarter_end_covers_the_deadline() -> None:
    today = date(2025, 4, 20)  # next deadline 30/04/2025, for the quarter ending 31/03/2025
    sub = checked()
    assert not covers_next_deadline(today, DeadlineRule(), [sub])
    assert covers_next_deadline(today, DeadlineRule(), [sub.model_copy(update={"state": S.APPROVED})])
    short = sub.model_copy(update={"state": S.SENT, "period_end": date(2024, 12, 31)})
    assert not covers_next_deadline(today, DeadlineRule(), [short])


# -- reporting period bounds (issue 10, finding 11) -------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "why"),
    [
        (date(1, 1, 1), date(9999, 12, 31), "before CLD began"),
        (date(2024, 4, 1), date(9999, 12, 31), "not over yet"),
        (date(2025, 4, 1), date(2024, 3, 31), "before it starts"),
        (date(2024, 4, 2), date(2025, 4, 1), "first day of a month"),
        (date(2024, 4, 1), date(2025, 4, 30), "rolling 12 months: from 2024-04-01 it ends 2025-03-31"),
        (date(2024, 4, 1), date(2024, 6, 30), "rolling 12 months"),
        (date(2020, 4, 1), date(2021, 3, 31), "before CLD began"),
    ],
)
def test_implausible_periods_are_refused_with_the_reason(start: date, end: date, why: str) -> None:
    with pytest.raises(PeriodError, match=why):
        check_period(start, end, today=date(2026, 12, 3))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2024, 4, 1), date(2025, 3, 31)),
        (date(2025, 12, 1), date(2026, 11, 30)),
        (date(2023, 4, 1), date(2024, 3, 31)),
    ],
)
def test_rolling_twelve_month_periods_are_accepted(start: date, end: date) -> None:
    check_period(start, end, today=date(2026, 12, 3))
