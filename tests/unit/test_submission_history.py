"""The pure replay of lifecycle events (``cld_submission.domain.history``) and what rebuild reports say is missing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from cld_schemas.events import SubmissionEvent, SubmissionState
from cld_submission.domain.history import REBUILD_ACTOR, LocatedEvent, audit_fields, in_order, replay, unsendable
from cld_submission.domain.lifecycle import advance, approve, new_submission
from cld_submission.entrypoints.rebuild import PartitionCoverage, RebuildReport, committed_gaps, missing_partitions
from cld_submission.entrypoints.rebuild_history import HistoryReport

S = SubmissionState
T0 = datetime(2025, 4, 2, 9, 0, tzinfo=UTC)


def _lifecycle(sid: str, la: str, t0: datetime) -> list[SubmissionEvent]:
    sub, e1 = new_submission(
        submission_id=sid,
        la_code=la,
        period_start=date(2024, 4, 1),
        period_end=date(2025, 3, 31),
        requested_by="Ada Operator",
        at=t0,
    )
    sub, e2 = advance(sub, S.ASSEMBLED, at=t0, by="svc", file_sha256="ab" * 32, rows=3, size_bytes=9, file_name="f")
    sub, e3 = advance(sub, S.CHECKED, at=t0, by="svc", detail="0 dataset error(s)")
    sub, e4 = approve(sub, by="Grace Approver", at=t0 + timedelta(minutes=5))
    sub, e5 = advance(sub, S.SENT, at=t0 + timedelta(minutes=6), by="svc", message_id="M1", transport="mesh")
    return [e1, e2, e3, e4, e5]


def _at(events: list[SubmissionEvent], partition: int = 0) -> list[LocatedEvent]:
    return [LocatedEvent(e, partition, i) for i, e in enumerate(events)]


def test_replaying_a_submissions_events_gives_the_submission_back() -> None:
    events = _lifecycle("s1", "318", T0)
    replayed = replay(_at(events))
    sub = replayed.submissions["s1"]
    assert sub.state is S.SENT
    assert (sub.requested_by, sub.requested_at) == ("Ada Operator", T0)
    assert (sub.approved_by, sub.approved_at) == ("Grace Approver", T0 + timedelta(minutes=5))
    assert (sub.file_sha256, sub.rows, sub.size_bytes, sub.file_name) == ("ab" * 32, 3, 9, "f")
    assert (sub.message_id, sub.transport, sub.updated_at) == ("M1", "mesh", T0 + timedelta(minutes=6))
    assert len(replayed.applied) == 5
    assert replayed.duplicates == 0


def test_a_repeated_event_is_applied_once_and_a_gap_is_refused_with_a_reason() -> None:
    e = _lifecycle("s1", "318", T0)
    replayed = replay(_at([e[0], e[1], e[1], e[2], e[4]]))  # 'approved' is missing
    assert replayed.duplicates == 1
    assert replayed.submissions["s1"].state is S.CHECKED
    [refused] = replayed.refused
    assert (refused.submission_id, refused.offset) == ("s1", 4)
    assert "'checked' cannot become 'sent'" in refused.reason


def test_a_submission_whose_first_event_is_gone_is_refused_not_guessed() -> None:
    replayed = replay(_at(_lifecycle("s1", "318", T0)[2:]))
    assert replayed.submissions == {}
    assert len(replayed.refused) == 3
    assert "its first event is 'checked', not 'requested'" in replayed.refused[0].reason


def test_partitions_are_merged_by_time_keeping_each_partitions_order() -> None:
    a = _at(_lifecycle("a", "318", T0), partition=0)
    b = _at(_lifecycle("b", "319", T0 + timedelta(minutes=1)), partition=1)
    merged = in_order([a, b])
    assert [x.event.submission_id for x in merged if x.partition == 0] == ["a"] * 5
    assert [x.offset for x in merged if x.partition == 1] == [0, 1, 2, 3, 4]
    assert [x.event.at for x in merged] == sorted(x.event.at for x in merged)
    assert set(replay(merged).submissions) == {"a", "b"}


def test_an_audit_line_keeps_the_steps_time_and_says_where_it_was_rebuilt_from() -> None:
    located = _at(_lifecycle("s1", "318", T0))[3]
    action, fields = audit_fields(located, topic="cld.submissions.v1")
    assert action == "approved"
    assert fields["by"] == "Grace Approver"
    assert fields["at"] == (T0 + timedelta(minutes=5)).isoformat()
    assert fields["rebuilt_from"] == "cld.submissions.v1/0/3"


def test_offsets_deleted_above_the_committed_one_are_a_gap() -> None:
    partitions = (
        PartitionCoverage(0, 120, 200, T0, 80, committed_offset=100),  # 100..119 never applied, now gone
        PartitionCoverage(1, 50, 60, T0, 10, committed_offset=60),  # deleted, but the state had read them
        PartitionCoverage(2, 0, 5, T0, 5),  # nothing known committed
    )
    [gap] = committed_gaps(partitions)
    assert gap.startswith("partition 0: the state had committed offset 100 but the earliest retained offset is 120")
    assert "20 record(s) (offsets 100..119)" in gap


def test_a_missing_topic_or_partition_is_reported() -> None:
    assert missing_partitions("t", set(), {}) == (
        "topic t does not exist (or has no partitions): nothing could be rebuilt from it",
    )
    assert missing_partitions("t", {0, 1}, {0: 5, 2: 7}) == (
        "partition 2: the state had read it to offset 7 but the topic has no partition 2",
    )


def test_a_state_rebuild_with_a_gap_or_a_missing_partition_is_incomplete_but_unreadable_records_are_not() -> None:
    whole = RebuildReport("t", date(2026, 1, 1), 5, 2, (PartitionCoverage(0, 0, 7, T0, 7, 7),), {"not_json": 2})
    assert whole.complete
    gap = RebuildReport("t", date(2026, 1, 1), 5, 0, (PartitionCoverage(0, 3, 8, T0, 5, 1),))
    assert not gap.complete
    missing = RebuildReport("t", date(2026, 1, 1), 0, 0, missing=missing_partitions("t", set(), {}))
    assert missing.problems == missing.missing


def test_a_history_report_names_what_could_not_be_recovered() -> None:
    report = HistoryReport(
        topic="cld.submissions.v1",
        events_read=12,
        submissions=2,
        steps_applied=9,
        duplicates=1,
        audit_lines=10,
        audit_verified=True,
        unreadable_by_reason={"not_json": 2},
        partitions=(PartitionCoverage(0, 0, 6), PartitionCoverage(1, 4, 10)),
    )
    assert report.problems == (
        "partition 1: offsets 0..3 are gone (4 lifecycle event(s) deleted; the topic is meant to keep them for ever)",
        "2 event(s) could not be read (not_json)",
    )
    assert not report.complete
    assert any("DQ summaries" in item for item in report.not_in_events)


def test_deletions_before_the_period_are_a_note_not_a_gap() -> None:
    report = RebuildReport(
        "t", date(2026, 1, 1), 5, 0, (PartitionCoverage(0, 10, 15, datetime(2025, 11, 30, tzinfo=UTC), 5),)
    )
    assert report.complete
    [note] = report.notes
    assert note.startswith("partition 0: 10 record(s) from before 2026-01-01 were deleted by retention")


def test_only_an_approved_submission_without_its_file_is_failed_by_the_rebuild() -> None:
    approved = replay(_at(_lifecycle("s1", "318", T0)[:4])).submissions["s1"]
    sent = replay(_at(_lifecycle("s2", "318", T0))).submissions["s2"]
    assert unsendable([approved, sent], file_held=lambda s: True, at=T0) == []
    [(failed, event)] = unsendable([approved, sent], file_held=lambda s: False, at=T0 + timedelta(days=1))
    assert (failed.submission_id, failed.state, event.by) == ("s1", S.FAILED, REBUILD_ACTOR)
    assert failed.approved_by == "Grace Approver"  # the approval stays on record
