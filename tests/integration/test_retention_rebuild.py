"""On a real broker: ensure_topics creates the validated topic with the retention a rebuild needs, warns about an
existing topic that keeps less, and ``rebuild_state`` reports the records retention already deleted
(issue 10, finding 12). Deletion by retention is simulated with the admin API's DeleteRecords, which moves a
partition's log start offset exactly as retention does."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from cld_runtime.settings import Settings
from cld_runtime.topics import TOPIC_CONFIGS, _described, ensure_topics
from cld_schemas import topics
from cld_schemas.events import Provenance, RecordValidated
from cld_schemas.spec import Release
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
