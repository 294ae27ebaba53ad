"""Rebuild the record state from the validated topic's beginning (the service must be stopped).

Reads every partition from its earliest retained offset up to the end offsets seen at the start, with a plain
aiokafka consumer outside any consumer group, and applies the records in order to an emptied store.
Submissions, files and the audit log are kept. The record-key secret is kept too, so record keys (and diffs)
stay comparable.

"The topic's beginning" is only what retention kept (``cld.records.validated.v1`` keeps 400 days:
``cld_runtime.topics.TOPIC_CONFIGS``). The rebuild says what it could not recover (:class:`RebuildReport`,
:func:`coverage_warnings`): a partition whose earliest retained record is later than the start of the reporting
period being rebuilt (by default the rolling 12 months the next deadline is for) lost records that may have held
that period's data, and the report names the partition, the dates and how many records are gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from cld_schemas import topics
from cld_schemas.events import RecordValidated

from .deadlines import DeadlineRule, next_deadline
from .engines import open_record_store
from .state import Incoming

if TYPE_CHECKING:
    from .service import SubmissionSettings


@dataclass(frozen=True, slots=True)
class PartitionCoverage:
    """What one partition still holds: offsets ``first_offset`` .. ``end_offset - 1`` (earlier ones are gone)."""

    partition: int
    first_offset: int
    """The earliest retained offset; every offset before it was deleted (retention) and cannot be read."""
    end_offset: int
    first_timestamp: datetime | None = None
    """Timestamp of the earliest record read (None when nothing was read)."""
    records_read: int = 0

    @property
    def records_lost(self) -> int:
        return self.first_offset


@dataclass(frozen=True, slots=True)
class RebuildReport:
    topic: str
    period_start: date
    applied: int
    unreadable: int
    partitions: tuple[PartitionCoverage, ...] = field(default=())

    @property
    def warnings(self) -> tuple[str, ...]:
        return coverage_warnings(self.partitions, self.period_start)

    @property
    def complete(self) -> bool:
        return not self.warnings


def rolling_period_start(today: date, rule: DeadlineRule | None = None) -> date:
    """Start of the rolling 12 months ending at the quarter end the next deadline is for."""
    _, quarter_end = next_deadline(today, rule or DeadlineRule())
    return date(quarter_end.year - 1, quarter_end.month, quarter_end.day) + timedelta(days=1)


def coverage_warnings(partitions: tuple[PartitionCoverage, ...], period_start: date) -> tuple[str, ...]:
    """One sentence per partition whose deleted records may have held data of the period from ``period_start``.

    Records were deleted when the earliest retained offset is above 0. That matters when the earliest record
    still there is from after the period start (or nothing is left at all): records of the period may be gone.
    Deleted records from before the period start are older than the period and are not reported.
    """
    out: list[str] = []
    for p in partitions:
        if p.first_offset == 0:
            continue
        if p.first_timestamp is None:
            out.append(
                f"partition {p.partition}: all {p.records_lost} record(s) were deleted by retention (nothing left "
                f"to read); records of the period from {period_start.isoformat()} may be missing from the state"
            )
        elif p.first_timestamp.date() > period_start:
            out.append(
                f"partition {p.partition}: the earliest retained record is from "
                f"{p.first_timestamp.date().isoformat()}, after the period start {period_start.isoformat()}; "
                f"{p.records_lost} earlier record(s) (offsets 0..{p.first_offset - 1}) were deleted by retention "
                "and what they held is missing from the rebuilt state"
            )
    return tuple(out)


async def _partitions(settings: SubmissionSettings, topic: str) -> set[int]:
    """The topic's partition ids from the broker (empty when the topic does not exist). The consumer's
    ``partitions_for_topic`` is synchronous and answers only from metadata it already holds (awaiting it, as
    before, raised TypeError: rebuild-state had never run against a broker)."""
    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs(), client_id=f"cld-{settings.service_name}-rebuild")
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {
        p["partition"]
        for t in described
        if t.get("error_code", 0) == 0 and t.get("topic") == topic
        for p in t.get("partitions", ())
    }


async def rebuild_state(
    settings: SubmissionSettings, *, batch: int = 2000, period_start: date | None = None
) -> RebuildReport:
    """Rebuild the store from the retained records and report what the topic no longer held."""
    topic = settings.topic(topics.VALIDATED)
    if period_start is None:
        period_start = rolling_period_start(datetime.now(UTC).date(), settings.workflow_settings().deadline_rule)
    store = open_record_store(settings.state_dir, settings.database_url)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.aiokafka_kwargs())
    applied = unreadable = 0
    try:
        await consumer.start()
        partitions = await _partitions(settings, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            store.reset()
            return RebuildReport(topic, period_start, 0, 0)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        first_ts: dict[TopicPartition, datetime] = {}
        read: dict[TopicPartition, int] = dict.fromkeys(tps, 0)
        store.reset()
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        while remaining:
            got = await consumer.getmany(*remaining, timeout_ms=1000, max_records=batch)
            items: list[Incoming] = []
            for tp, records in got.items():
                for r in records:
                    if r.offset >= ends[tp]:
                        continue
                    if tp not in first_ts:
                        first_ts[tp] = datetime.fromtimestamp(r.timestamp / 1000, tz=UTC)
                    read[tp] += 1
                    try:
                        event = RecordValidated.model_validate_json(r.value or b"")
                    except ValidationError:
                        unreadable += 1
                        continue  # the live consumer dead-lettered it already
                    items.append(Incoming(event, r.topic, r.partition, r.offset))
            if items:
                store.apply_many(items)
                applied += len(items)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
        store.close()
    coverage = tuple(PartitionCoverage(tp.partition, starts[tp], ends[tp], first_ts.get(tp), read[tp]) for tp in tps)
    return RebuildReport(topic, period_start, applied, unreadable, coverage)
