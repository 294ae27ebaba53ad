"""The Kafka consumers of the submission process: thin handlers that read a batch, dead-letter what cannot be read
and hand the rest to the service layer (``SubmissionWorkflow``).

- ``cld.records.validated.v1`` (group ``cld-submission``, batches, offsets committed after the batch is stored; the
  store also keeps each partition's offset in the same transaction as the records).
- ``cld.records.pseudonymised.v1`` (group ``cld-submission-pseudonymised``) into the record state's pseudonymised
  table, for exports to recipients other than NHS England (``service_layer.exports``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TypeVar

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from pydantic import ValidationError

from cld_runtime import DeadLetterPublisher, dead_letter_for
from cld_runtime.accounting import ConsumerAccounting, Outcome
from cld_runtime.messages import RawMessage, raw_messages, tolerant_parser, undecoded, unreadable_reason
from cld_schemas import topics
from cld_schemas.events import DeadLetterReason, RecordPseudonymised, RecordValidated

from ..domain.records import Incoming
from ..service_layer.workflow import SubmissionWorkflow
from .settings import SERVICE, SubmissionSettings

_Event = TypeVar("_Event", RecordValidated, RecordPseudonymised)


def add_consumers(
    broker: KafkaBroker,
    *,
    settings: SubmissionSettings,
    workflow: SubmissionWorkflow,
    deadletters: DeadLetterPublisher,
    accounting: ConsumerAccounting,
    log: logging.Logger,
) -> None:
    """Subscribe the two record consumers on ``broker``."""

    async def dead_letter(msg: RawMessage, reason: DeadLetterReason, detail: str) -> None:
        log.warning(
            "dead letter",
            extra={"reason": reason.value, "topic": msg.topic, "partition": msg.partition, "offset": msg.offset},
        )
        await deadletters.publish(
            dead_letter_for(
                reason=reason,
                detail=detail,
                payload=msg.value,
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                key=msg.key,
                service=SERVICE,
                at=datetime.now(UTC),
                fingerprint_key=deadletters.fingerprint_key,
            )
        )

    async def decode(msg: RawMessage, model: type[_Event]) -> _Event | None:
        """The event in ``msg``, or None after dead-lettering it: a message that cannot be read never stalls
        the partition (the subscribers decode nothing themselves: ``cld_runtime.messages.undecoded``)."""
        if (problem := msg.header_problem()) is not None:
            await dead_letter(msg, problem.reason, problem.detail)
            return None
        try:
            return model.model_validate_json(msg.value or b"")
        except ValidationError as exc:
            reason = unreadable_reason(msg.value, exc)
            detail = f"not a {model.__name__} event ({exc.error_count()} error(s))"
        except Exception as exc:  # an unforeseen input must not stall the partition either
            log.exception(
                "reading failed", extra={"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}
            )
            reason, detail = DeadLetterReason.PROCESSING_ERROR, f"reading failed ({type(exc).__name__})"
        await dead_letter(msg, reason, detail)
        return None

    async def read(msg: RawMessage) -> Incoming | None:
        event = await decode(msg, RecordValidated)
        return None if event is None else Incoming(event, msg.topic, msg.partition, msg.offset)

    async def read_pseudonymised(msg: RawMessage) -> RecordPseudonymised | None:
        return await decode(msg, RecordPseudonymised)

    @broker.subscriber(
        settings.topic(topics.VALIDATED),
        group_id=settings.group_id,
        batch=True,
        max_records=settings.consumer_max_records,
        batch_timeout_ms=settings.consumer_batch_timeout_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=tolerant_parser,
        decoder=undecoded,
        title=f"{topics.VALIDATED}:submission",
        description="Validated records into the per-LA submission state (latest version per record).",
    )
    async def on_records_validated(message: KafkaMessage) -> None:
        # A record that is readable but cannot be stored (e.g. the state cannot key it) is dead-lettered after
        # the batch is split (``service_layer.intake.store_or_split``); a transient error (database locked, disk I/O)
        # raises, so the batch is redelivered.
        async def not_stored(msg: RawMessage, exc: Exception) -> None:
            await dead_letter(msg, DeadLetterReason.PROCESSING_ERROR, f"storing failed ({type(exc).__name__})")

        consumed = raw_messages(message)
        pairs = [(m, i) for m in consumed if (i := await read(m)) is not None]
        stored = len(pairs)
        if pairs:
            stored -= len(await workflow.on_records_or_split(pairs, not_stored))
        accounting.batch(topics.VALIDATED, {Outcome.STORED: stored, Outcome.DEADLETTERED: len(consumed) - stored})

    @broker.subscriber(
        settings.topic(topics.PSEUDONYMISED),
        group_id=f"{settings.group_id}-pseudonymised",
        batch=True,
        max_records=settings.consumer_max_records,
        batch_timeout_ms=settings.consumer_batch_timeout_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=tolerant_parser,
        decoder=undecoded,
        title=f"{topics.PSEUDONYMISED}:submission",
        description=(
            "Pseudonymised records (by LA, source, event id and purpose) for exports to recipients other than "
            "NHS England."
        ),
    )
    async def on_records_pseudonymised(message: KafkaMessage) -> None:
        async def not_stored(msg: RawMessage, exc: Exception) -> None:  # as in on_records_validated
            await dead_letter(msg, DeadLetterReason.PROCESSING_ERROR, f"storing failed ({type(exc).__name__})")

        consumed = raw_messages(message)
        pairs = [(m, i) for m in consumed if (i := await read_pseudonymised(m)) is not None]
        stored = len(pairs)
        if pairs:
            stored -= len(await workflow.on_pseudonymised_or_split(pairs, not_stored))
        accounting.batch(topics.PSEUDONYMISED, {Outcome.STORED: stored, Outcome.DEADLETTERED: len(consumed) - stored})
