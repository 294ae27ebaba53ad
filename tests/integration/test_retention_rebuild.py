"""On a real broker: ensure_topics creates the validated topic with the retention a rebuild needs, warns about an
existing topic that keeps less, and ``rebuild_state`` reports the records retention already deleted
(issue 10, finding 12); a rebuild that crosses segment rolls gives back exactly the state the records built, and
offsets gone above the committed one, missing partitions or a missing topic make ``rebuild-state`` exit 4
(issue 12, item 4). Deletion by retention is simulated with the admin API's DeleteRecords, which moves a
partition's log start offset exactly as retention does."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from cld_cli.main import app
from cld_runtime.files import private_dir
from cld_runtime.settings import Settings
from cld_runtime.topics import TOPIC_CONFIGS, _described, ensure_topics
from cld_schemas import topics
from cld_schemas.events import Provenance, RecordValidated
from cld_schemas.spec import Release
from cld_submission.adapters.sqlite_record_store import SECRET_NAME, StateStore
from cld_submission.domain.records import Incoming
from cld_submission.entrypoints.rebuild import rebuild_state
from cld_submission.entrypoints.settings import SubmissionSettings
from cld_validation.intake import normalise_dates
from tests.support.records import service_record

pytestmark = pytest.mark.integration


async def _retention(bootstrap: str, topic: str) -> str:
    """The topic's retention.ms, polled (at most 30 s) until the new topic's metadata has reached the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": None})
    described: dict[str, dict[str, str]] = {}
    try:
        for _ in range(150):
            described = _described(await admin.describe_configs([resource]))
            if topic in described:
                break
            await asyncio.sleep(0.2)  # poll interval of a bounded wait, not a synchronisation
    finally:
        await admin.close()
    return described[topic]["retention.ms"]


async def test_ensure_topics_sets_the_contract_retention_and_warns_about_less(
    kafka_bootstrap: str, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, topic_replication=1)
    validated, raw = settings.topic(topics.VALIDATED), settings.topic(topics.RAW)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:  # an "old" raw topic with 1 day, as a deployment from before might have
        await admin.create_topics([NewTopic(raw, 1, 1, topic_configs={"retention.ms": "86400000"})])
    finally:
        await admin.close()

    with caplog.at_level(logging.WARNING, logger="cld.runtime.topics"):
        await ensure_topics(settings, [validated, raw])

    assert await _retention(kafka_bootstrap, validated) == TOPIC_CONFIGS[topics.VALIDATED]["retention.ms"]
    assert await _retention(kafka_bootstrap, raw) == "86400000"  # existing topics are not altered ...
    [warning] = [r for r in caplog.records if "retention is shorter" in r.getMessage()]  # ... but reported
    assert warning.__dict__["topic"] == raw
    assert warning.__dict__["required_retention_ms"] == int(TOPIC_CONFIGS[topics.RAW]["retention.ms"])


def _event(i: int) -> bytes:
    return (
        RecordValidated(
            la_code="318",
            release=Release.R2,
            provenance=Provenance(source="test", event_id=f"ev-{i}", received_at=datetime.now(UTC)),
            record=normalise_dates(dict(service_record(la_person_unique_identifier=f"P{i}"))),
            findings=[],
            failed=False,
            validated_at=datetime.now(UTC),
        )
        .model_dump_json()
        .encode()
    )


async def test_rebuild_reports_what_retention_deleted(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    settings = SubmissionSettings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, state_dir=tmp_path / "state"
    )
    topic = settings.topic(topics.VALIDATED)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
        for i in range(10):
            await producer.send_and_wait(topic, _event(i), key=b"318", partition=i % 2)
        # retention "deleted" the first 3 records of partition 0; partition 1 is whole
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(3)}, timeout_ms=30_000)
    finally:
        await producer.stop()
        await admin.close()

    report = await rebuild_state(settings, period_start=date(2026, 1, 1))

    assert report.applied == 7
    by_partition = {p.partition: p for p in report.partitions}
    assert by_partition[0].first_offset == 3
    assert by_partition[0].records_read == 2
    assert by_partition[1].first_offset == 0
    assert by_partition[1].records_read == 5
    [warning] = report.warnings
    assert warning.startswith("partition 0: the earliest retained record is from ")
    assert "3 earlier record(s) (offsets 0..2) were deleted by retention" in warning

    whole = await rebuild_state(settings, period_start=date.today())  # records from today: nothing missing
    assert whole.applied == 7
    assert whole.complete


# -- issue 12, item 4: a rebuild across segment rolls equals the original; what is missing is reported ----------

WIDE = (date(2000, 1, 1), date(2100, 12, 31))
"""A period that holds every record: the in-scope rows and the left-out rows together are all held records."""


def _version(i: int, *, reference: str, withdrawn: bool = False) -> RecordValidated:
    """Record ``reference`` (one person each) as sent the ``i``-th time (a later ``i`` is a later version)."""
    at = datetime(2026, 2, 1, tzinfo=UTC) + timedelta(minutes=i)
    return RecordValidated(
        la_code="318",
        release=Release.R2,
        provenance=Provenance(source="case-system", event_id=f"ev-{i}", received_at=at),
        record=normalise_dates(
            dict(service_record(event_reference=reference, la_person_unique_identifier=f"P-{reference}"))
            | {"service_component": "Home support or domiciliary care" if i % 3 else "Day care"}
        ),
        findings=[],
        failed=False,
        withdrawn=withdrawn,
        validated_at=at,
    )


def _held(store: StateStore) -> dict[str, Any]:
    """Everything the state holds, read through the store's own interface."""
    return {
        "la_codes": store.la_codes(),
        "newest": store.newest_received(),
        "in_scope": {la: list(store.iter_in_scope(la, *WIDE)) for la in store.la_codes()},
        "left_out": {la: list(store.iter_left_out(la, *WIDE)) for la in store.la_codes()},
    }


def _segments(tmp_path_factory: pytest.TempPathFactory, topic: str) -> dict[str, int]:
    """Log segment files per partition directory of the test broker (empty for an external broker)."""
    base = tmp_path_factory.getbasetemp()
    return {d.name: len(list(d.glob("*.log"))) for d in base.glob(f"kafka*/run/data/{topic}-*")}


async def test_a_rebuild_across_segment_rolls_equals_the_original_state(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    original_dir, rebuilt_dir = tmp_path / "original", tmp_path / "rebuilt"
    settings = SubmissionSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    topic = settings.topic(topics.VALIDATED)
    events = [_version(i, reference=f"EV{i % 25}") for i in range(60)]  # 35 later versions of 25 records
    events.append(_version(60, reference="EV3", withdrawn=True))  # and one withdrawn
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    original = StateStore.open(original_dir)
    try:  # ~1.5 kB records in 4 kB segments: each partition rolls about every third record
        await admin.create_topics([NewTopic(topic, 2, 1, topic_configs={"segment.bytes": "4096"})])
        batch: list[Incoming] = []
        for i, event in enumerate(events):
            md = await producer.send_and_wait(topic, event.model_dump_json().encode(), key=b"318", partition=i % 2)
            batch.append(Incoming(event, topic, md.partition, md.offset))
            if len(batch) == 7:  # as the live consumer applies them: a batch with its offsets
                original.apply_many(batch)
                batch.clear()
        await producer.send_and_wait(topic, b"{not json", key=b"318", partition=0)  # dead-lettered live
        original.apply_many(batch)
        expected, expected_offsets = _held(original), original.next_offsets(topic)
    finally:
        original.close()
        await producer.stop()
        await admin.close()
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):  # our own broker (an external one's files are not visible)
        segments = _segments(tmp_path_factory, topic)
        assert len(segments) == 2, segments
        assert min(segments.values()) > 3, segments  # the log really rolled, several times per partition
    # the record-key secret is kept apart from the volume (docs/operations.md): the rebuilt keys are the same
    private_dir(rebuilt_dir)
    shutil.copy2(original_dir / SECRET_NAME, rebuilt_dir / SECRET_NAME)

    progress: list[tuple[int, int]] = []
    report = await rebuild_state(
        settings.model_copy(update={"state_dir": rebuilt_dir}),
        batch=5,
        period_start=date(2026, 1, 1),
        on_progress=lambda done, total: progress.append((done, total)),
    )

    assert report.complete, report.problems
    assert report.applied == 61
    assert dict(report.unreadable_by_reason) == {"not_json": 1}
    assert progress[-1] == (62, 62)
    rebuilt = StateStore.open(rebuilt_dir)
    try:
        assert _held(rebuilt) == expected
        assert rebuilt.next_offsets(topic) == expected_offsets  # the unreadable record was never applied
    finally:
        rebuilt.close()
    assert len(expected["in_scope"]["318"]) + len(expected["left_out"]["318"]) == 24  # 25 records, one withdrawn


async def test_rebuild_reports_offsets_gone_above_the_committed_one_and_partitions_missing(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    settings = SubmissionSettings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, state_dir=tmp_path / "state"
    )
    topic = settings.topic(topics.VALIDATED)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    store = StateStore.open(settings.state_dir)
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
        sent = [_version(i, reference=f"EV{i}") for i in range(8)]
        for i, event in enumerate(sent):
            await producer.send_and_wait(topic, event.model_dump_json().encode(), key=b"318", partition=i % 2)
        # the state had applied partition 0 to offset 1 (next 2), and a partition 5 the topic no longer has
        store.apply_many([Incoming(sent[0], topic, 0, 0), Incoming(sent[2], topic, 0, 1)])
        store.apply_many([Incoming(_version(99, reference="GONE"), topic, 5, 0)])
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(3)}, timeout_ms=30_000)
    finally:
        store.close()
        await producer.stop()
        await admin.close()

    # a period starting after the records were written: only the offset and partition checks can speak
    report = await rebuild_state(settings, period_start=date(2100, 1, 1))

    assert report.applied == 5
    assert {p.partition: p.committed_offset for p in report.partitions} == {0: 2, 1: None}
    assert report.problems == (
        "partition 5: the state had read it to offset 1 but the topic has no partition 5",
        "partition 0: the state had committed offset 2 but the earliest retained offset is 3; 1 record(s) "
        "(offsets 2..2) were deleted before the state read them",
    )
    assert not report.complete


def test_cli_rebuild_state_prints_what_is_missing_and_exits_non_zero(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = {"CLD_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CLD_TOPIC_PREFIX": topic_prefix}
    state_dir = tmp_path / "state"

    missing = CliRunner().invoke(app, ["submission", "rebuild-state", "--state-dir", str(state_dir)], env=env)
    assert missing.exit_code == 4, missing.output
    assert "MISSING: topic " in missing.output
    assert "does not exist" in missing.output

    topic = f"{topic_prefix}{topics.VALIDATED}"

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait(topic, _version(i, reference=f"EV{i}").model_dump_json().encode())
        finally:
            await producer.stop()

    asyncio.run(produce())  # the broker creates the topic (auto-creation is on in the test broker)
    whole = CliRunner().invoke(app, ["submission", "rebuild-state", "--state-dir", str(state_dir)], env=env)
    assert whole.exit_code == 0, whole.output
    assert "rebuilt the record state from 3 record(s)" in whole.output
    assert "MISSING" not in whole.output
