"""Rebuild the record state from the validated topic's beginning (the service must be stopped).

Reads every partition from its earliest retained offset up to the end offsets seen at the start, with a plain
aiokafka consumer outside any consumer group (:class:`RetainedReader`, shared with ``rebuild_history``), and
applies the records in order to an emptied store through the ``StateStore`` interface. Submissions, files and
the audit log are kept. The record-key secret is kept too, so record keys (and diffs) stay comparable.

"The topic's beginning" is only what retention kept (``cld.records.validated.v1`` keeps 400 days:
``cld_runtime.topics.TOPIC_CONFIGS``). The rebuild says what it could not recover (:class:`RebuildReport`,
``problems``), and ``cld submission rebuild-state`` exits non-zero when there is any:

- a partition whose earliest retained record is later than the start of the reporting period being rebuilt (by
  default the rolling 12 months the next deadline is for): records that may have held that period's data are gone
  (:func:`coverage_warnings`);
- a partition whose earliest retained offset is above the offset the state (or, when the state volume is lost,
  the service's consumer group) had committed: records the state never applied and the topic no longer holds
  (:func:`committed_gaps`);
- a partition the state or the group had read that the topic no longer has, or no topic at all
  (:func:`missing_partitions`).

Records that cannot be read as ``RecordValidated`` are counted by reason (``cld_runtime.messages.
unreadable_reason``); they are not a gap (the live consumer dead-lettered them: the state never held them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from cld_runtime.messages import unreadable_reason
from cld_schemas import topics
from cld_schemas.events import RecordValidated

from ..adapters.stores import open_record_store
from ..domain.deadlines import DeadlineRule, next_deadline
from ..domain.records import Incoming

if TYPE_CHECKING:
    from aiokafka.structs import ConsumerRecord

    from .settings import SubmissionSettings

Progress = Callable[[int, int], None]
"""Called after each batch with (records read so far, records to read in all)."""


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
    committed_offset: int | None = None
    """The next offset the state (else the consumer group) had committed before the rebuild; None: unknown."""

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
    unreadable_by_reason: Mapping[str, int] = field(default_factory=dict)
    missing: tuple[str, ...] = field(default=())
    """Partitions (or the topic) the rebuild expected and did not find (:func:`missing_partitions`)."""

    @property
    def problems(self) -> tuple[str, ...]:
        """Everything the rebuild could not recover, one sentence each (empty: the rebuild is complete)."""
        return (
            *self.missing,
            *committed_gaps(self.partitions),
            *coverage_warnings(self.partitions, self.period_start),
        )

    @property
    def notes(self) -> tuple[str, ...]:
        """What may be missing but usually is not (:func:`older_deletions`): shown, not an incomplete rebuild."""
        return older_deletions(self.partitions, self.period_start)

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.problems

    @property
    def complete(self) -> bool:
        return not self.problems


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


def older_deletions(partitions: tuple[PartitionCoverage, ...], period_start: date) -> tuple[str, ...]:
    """One sentence per partition whose deleted records all predate the period start.

    Usually nothing is lost: an LA's quarterly file is a complete snapshot of its rolling 12 months, so every
    in-scope record was sent again after them. A record sent only once before the period start and never again
    (an open service from a source that streams changes only) was among them, and the rebuilt state lacks it.
    """
    return tuple(
        f"partition {p.partition}: {p.records_lost} record(s) from before {period_start.isoformat()} were deleted "
        "by retention; a record not sent again since (e.g. a service still open) is not in the rebuilt state: "
        "a full snapshot upload from the source restores it"
        for p in partitions
        if p.first_offset > 0 and p.first_timestamp is not None and p.first_timestamp.date() <= period_start
    )


def committed_gaps(partitions: tuple[PartitionCoverage, ...]) -> tuple[str, ...]:
    """One sentence per partition whose earliest retained offset is above the committed one: the records in
    between were never applied to the state and the topic no longer has them."""
    return tuple(
        f"partition {p.partition}: the state had committed offset {p.committed_offset} but the earliest retained "
        f"offset is {p.first_offset}; {p.first_offset - p.committed_offset} record(s) (offsets "
        f"{p.committed_offset}..{p.first_offset - 1}) were deleted before the state read them"
        for p in partitions
        if p.committed_offset is not None and p.first_offset > p.committed_offset
    )


def missing_partitions(topic: str, present: set[int], committed: Mapping[int, int]) -> tuple[str, ...]:
    """Sentences for a topic that does not exist, and for partitions that were read before but are gone."""
    if not present:
        return (f"topic {topic} does not exist (or has no partitions): nothing could be rebuilt from it",)
    return tuple(
        f"partition {p}: the state had read it to offset {committed[p]} but the topic has no partition {p}"
        for p in sorted(set(committed) - present)
    )


async def topic_partitions(settings: SubmissionSettings, topic: str) -> set[int]:
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


async def group_committed(settings: SubmissionSettings, group_id: str, topic: str) -> dict[int, int]:
    """The consumer group's committed next offsets on ``topic`` (Kafka keeps them when the state volume is lost);
    empty when the group has none or cannot be asked."""
    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs(), client_id=f"cld-{settings.service_name}-rebuild")
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    except Exception:  # only a cross-check: the rebuild itself does not need it
        return {}
    finally:
        await admin.close()
    return {tp.partition: int(om.offset) for tp, om in offsets.items() if tp.topic == topic and om.offset >= 0}


class RetainedReader:
    """Reads every retained record of a topic once, up to the end offsets seen when it starts (outside any
    consumer group: nothing is committed), and keeps what each partition held (:meth:`coverage`)."""

    def __init__(self, settings: SubmissionSettings, topic: str, *, batch: int = 2000) -> None:
        self._settings = settings
        self.topic = topic
        self._batch = batch
        self.partitions: set[int] = set()
        self.starts: dict[int, int] = {}
        self.ends: dict[int, int] = {}
        self._first_ts: dict[int, datetime] = {}
        self._read: Counter[int] = Counter()
        self._tps: list[TopicPartition] = []
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def read(self) -> int:
        """How many records have been read so far."""
        return sum(self._read.values())

    @property
    def total(self) -> int:
        """How many records the retained offsets hold (known once :meth:`records` has started)."""
        return sum(self.ends[p] - self.starts[p] for p in self.ends)

    async def __aenter__(self) -> RetainedReader:
        """Ask the broker for the partitions and their retained offsets (fails here when Kafka is away, before
        anything is changed)."""
        self.partitions = await topic_partitions(self._settings, self.topic)
        self._tps = [TopicPartition(self.topic, p) for p in sorted(self.partitions)]
        if not self._tps:
            return self
        self._consumer = AIOKafkaConsumer(enable_auto_commit=False, **self._settings.aiokafka_kwargs())
        await self._consumer.start()
        try:
            self._consumer.assign(self._tps)
            await self._consumer.seek_to_beginning(*self._tps)
            starts = await self._consumer.beginning_offsets(self._tps)
            ends = await self._consumer.end_offsets(self._tps)
        except BaseException:
            await self.__aexit__()
            raise
        self.starts = {tp.partition: starts[tp] for tp in self._tps}
        self.ends = {tp.partition: ends[tp] for tp in self._tps}
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def records(self) -> AsyncIterator[list[ConsumerRecord[Any, Any]]]:
        """Batches of records, each partition in offset order (inside ``async with``)."""
        consumer = self._consumer
        if consumer is None:
            return
        ends = {tp: self.ends[tp.partition] for tp in self._tps}
        remaining = {tp for tp in self._tps if ends[tp] > self.starts[tp.partition]}
        while remaining:
            got = await consumer.getmany(*remaining, timeout_ms=1000, max_records=self._batch)
            out: list[ConsumerRecord[Any, Any]] = []
            for tp, records in got.items():
                for r in records:
                    if r.offset >= ends[tp]:
                        continue
                    self._first_ts.setdefault(tp.partition, datetime.fromtimestamp(r.timestamp / 1000, tz=UTC))
                    self._read[tp.partition] += 1
                    out.append(r)
            if out:
                yield out
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)

    def coverage(self, committed: Mapping[int, int] | None = None) -> tuple[PartitionCoverage, ...]:
        committed = committed or {}
        return tuple(
            PartitionCoverage(
                p,
                self.starts.get(p, 0),
                self.ends.get(p, 0),
                self._first_ts.get(p),
                self._read[p],
                committed.get(p),
            )
            for p in sorted(self.partitions)
        )


async def rebuild_state(
    settings: SubmissionSettings,
    *,
    batch: int = 2000,
    period_start: date | None = None,
    on_progress: Progress | None = None,
) -> RebuildReport:
    """Rebuild the store from the retained records and report what the topic no longer held."""
    topic = settings.topic(topics.VALIDATED)
    if period_start is None:
        period_start = rolling_period_start(datetime.now(UTC).date(), settings.workflow_settings().deadline_rule)
    store = open_record_store(settings.state_dir, settings.database_url)
    reader = RetainedReader(settings, topic, batch=batch)
    applied = 0
    unreadable: Counter[str] = Counter()
    try:
        # what had been read before: the state's own offsets, else (a lost volume) the consumer group's
        committed = store.next_offsets(topic) or await group_committed(settings, settings.group_id, topic)
        async with reader:  # the broker answered: only now is the state emptied
            store.reset()
            async for records in reader.records():
                items: list[Incoming] = []
                for r in records:
                    try:
                        event = RecordValidated.model_validate_json(r.value or b"")
                    except ValidationError as exc:
                        unreadable[unreadable_reason(r.value, exc).value] += 1
                        continue  # the live consumer dead-lettered it already
                    items.append(Incoming(event, r.topic, r.partition, r.offset))
                if items:
                    store.apply_many(items)
                    applied += len(items)
                if on_progress is not None:
                    on_progress(reader.read, reader.total)
    finally:
        store.close()
    return RebuildReport(
        topic,
        period_start,
        applied,
        sum(unreadable.values()),
        reader.coverage(committed),
        dict(sorted(unreadable.items())),
        missing_partitions(topic, reader.partitions, committed),
    )
