"""Rebuild the record state from the validated topic's beginning (the service must be stopped).

Reads every partition from offset 0 up to the end offsets seen at the start, with a plain aiokafka consumer
outside any consumer group, and applies the records in order to an emptied store. Submissions, files and
the audit log are kept. The record-key secret is kept too, so record keys (and diffs) stay comparable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from cld_schemas import topics
from cld_schemas.events import RecordValidated

from .state import Incoming, StateStore

if TYPE_CHECKING:
    from .service import SubmissionSettings


async def rebuild_state(settings: SubmissionSettings, *, batch: int = 2000) -> int:
    topic = settings.topic(topics.VALIDATED)
    store = StateStore.open(settings.state_dir)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.aiokafka_kwargs())
    applied = 0
    try:
        await consumer.start()
        partitions = await consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            store.reset()
            return 0
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        store.reset()
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            got = await consumer.getmany(*remaining, timeout_ms=1000, max_records=batch)
            items: list[Incoming] = []
            for tp, records in got.items():
                for r in records:
                    if r.offset >= ends[tp]:
                        continue
                    try:
                        event = RecordValidated.model_validate_json(r.value or b"")
                    except ValidationError:
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
    return applied
