"""Retention covers what a rebuild needs, and a rebuild says what it could not recover (issue 10, finding 12)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace

from cld_runtime.settings import Settings
from cld_runtime.topics import (
    DAY_MS,
    TOPIC_CONFIGS,
    _described,
    new_topics,
    retention_shortfalls,
    topic_config,
)
from cld_schemas import topics
from cld_submission.entrypoints.rebuild import PartitionCoverage, RebuildReport, coverage_warnings, rolling_period_start


def test_the_validated_topic_keeps_more_than_a_rolling_year_and_the_submission_window() -> None:
    retention_days = int(TOPIC_CONFIGS[topics.VALIDATED]["retention.ms"]) / DAY_MS
    # 12 months (366 days at most) + the window closing one month after the quarter end (31 days at most)
    assert retention_days >= 366 + 31
    # identifiable raw records are still kept only two weeks
    assert int(TOPIC_CONFIGS[topics.RAW]["retention.ms"]) == 14 * DAY_MS
    assert set(TOPIC_CONFIGS) == set(topics.ALL)


def test_ensure_topics_creates_topics_with_the_contract_configs() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", topic_prefix="t1.", topic_partitions=6)
    created = {t.name: t for t in new_topics(settings, ["t1.cld.records.validated.v1", "t1.cld.deadletter.v1", "x"])}
    assert created["t1.cld.records.validated.v1"].topic_configs == dict(TOPIC_CONFIGS[topics.VALIDATED])
    assert created["t1.cld.records.validated.v1"].num_partitions == 6
    assert created["t1.cld.deadletter.v1"].topic_configs["retention.ms"] == str(30 * DAY_MS)
    assert created["x"].topic_configs == {}  # not a contract topic: broker defaults
    assert topic_config(settings, "cld.records.validated.v1") == {}  # the prefix is part of the name


def test_a_shorter_retention_on_an_existing_topic_is_reported() -> None:
    required = {"v": {"retention.ms": str(400 * DAY_MS)}, "s": {"retention.ms": "-1"}, "d": {"retention.ms": "5"}}
    actual = {"v": {"retention.ms": str(14 * DAY_MS)}, "s": {"retention.ms": "-1"}, "d": {"retention.ms": "-1"}}
    assert retention_shortfalls(required, actual) == [("v", 14 * DAY_MS, 400 * DAY_MS)]
    assert retention_shortfalls({"s": {"retention.ms": "-1"}}, {"s": {"retention.ms": "9"}}) == [("s", 9, -1)]


def test_described_configs_are_read_from_the_admin_response() -> None:
    response = SimpleNamespace(
        resources=[(0, None, 2, "t.v", [("retention.ms", "1209600000", False, 1, False)]), (3, "gone", 2, "t.x", [])]
    )
    assert _described([response]) == {"t.v": {"retention.ms": "1209600000"}}


def test_the_period_checked_is_the_rolling_year_the_next_deadline_is_for() -> None:
    assert rolling_period_start(date(2026, 12, 3)) == date(2026, 1, 1)  # due 31/01/2027 for Q ending 31/12/2026
    assert rolling_period_start(date(2026, 4, 20)) == date(2025, 4, 1)  # due 30/04/2026 for Q ending 31/03/2026


def _at(d: str) -> datetime:
    return datetime.fromisoformat(d).replace(tzinfo=UTC)


def test_a_rebuild_reports_partitions_that_lost_records_of_the_period() -> None:
    period = date(2026, 1, 1)
    report = RebuildReport(
        topic="cld.records.validated.v1",
        period_start=period,
        applied=70,
        unreadable=0,
        partitions=(
            PartitionCoverage(0, 0, 40, _at("2025-03-01"), 40),  # nothing deleted
            PartitionCoverage(1, 25, 50, _at("2026-06-15"), 25),  # 25 deleted, earliest left after period start
            PartitionCoverage(2, 10, 15, _at("2025-11-30"), 5),  # deleted records predate the period
            PartitionCoverage(3, 12, 12, None, 0),  # everything deleted
        ),
    )
    warnings = report.warnings
    assert len(warnings) == 2
    assert warnings[0].startswith("partition 1: the earliest retained record is from 2026-06-15")
    assert "after the period start 2026-01-01" in warnings[0]
    assert "25 earlier record(s) (offsets 0..24)" in warnings[0]
    assert warnings[1].startswith("partition 3: all 12 record(s) were deleted")
    assert not report.complete


def test_a_rebuild_from_a_full_history_has_no_warning() -> None:
    partitions = (PartitionCoverage(0, 0, 3, _at("2026-02-01"), 3), PartitionCoverage(1, 0, 0))
    assert coverage_warnings(partitions, date(2026, 1, 1)) == ()
