"""The Kafka consumers of the submission process: thin handlers that read a batch, dead-letter what cannot be read
and hand the rest to the service layer (``SubmissionWorkflow``).

- ``cld.records.validated.v1`` (group ``cld-submission``, batches, offsets committed after the batch is stored; the
  store also keeps each partition's offset in the same transaction as the records).
- ``cld.records.pseudonymised.v1`` (group ``cld-submission-pseudonymised``) into the record state's pseudonymised
  table, for exports to recipients other than NHS England (``service_layer.exports``).

The conversion at this hop (``cld.records.validated.v1`` / ``cld.records.pseudonymised.v1`` -> the record
state): each message is validated once into its event model (``cld_runtime.consumer.ConsumedBatch.decode``;
dead-lettered if it cannot be) and the events are stored as they are (the record store); the file to NHS
England is assembled later from the state. Subscriber options, dead letters and accounting are
``cld_runtime.consumer``'s.
"""

from __future__ import annotations

from cld_runtime.consumer import ConsumedBatch, Consumer
from cld_runtime.messages import RawMessage
from cld_schemas import topics
from cld_schemas.events import DeadLetterReason, RecordPseudonymised, RecordValidated

from ..domain.records import Incoming
from ..service_layer.workflow import SubmissionWorkflow
from .settings import SubmissionSettings


def add_consumers(consumer: Consumer, *, settings: SubmissionSettings, workflow: SubmissionWorkflow) -> None:
    """Subscribe the two record consumers through the process's ``consumer``."""

    async def on_records_validated(batch: ConsumedBatch) -> None:
        # A record that is readable but cannot be stored (e.g. the state cannot key it) is dead-lettered after
        # the batch is split (``service_layer.intake.store_or_split``); a transient error (database locked, disk
        # I/O) raises, so the batch is redelivered.
        async def not_stored(msg: RawMessage, exc: Exception) -> None:
            await batch.dead_letter(msg, DeadLetterReason.PROCESSING_ERROR, f"storing failed ({type(exc).__name__})")

        pairs = [
            (m, Incoming(e, m.topic, m.partition, m.offset))
            for m in batch.messages
            if (e := await batch.decode(m, RecordValidated)) is not None
        ]
        if pairs:
            batch.stored(len(pairs) - len(await workflow.on_records_or_split(pairs, not_stored)))

    async def on_records_pseudonymised(batch: ConsumedBatch) -> None:
        async def not_stored(msg: RawMessage, exc: Exception) -> None:  # as in on_records_validated
            await batch.dead_letter(msg, DeadLetterReason.PROCESSING_ERROR, f"storing failed ({type(exc).__name__})")

        pairs = [(m, e) for m in batch.messages if (e := await batch.decode(m, RecordPseudonymised)) is not None]
        if pairs:
            batch.stored(len(pairs) - len(await workflow.on_pseudonymised_or_split(pairs, not_stored)))

    consumer.subscribe(
        topics.VALIDATED,
        group_id=settings.group_id,
        handler=on_records_validated,
        title=f"{topics.VALIDATED}:submission",
        description="Validated records into the per-LA submission state (latest version per record).",
    )
    consumer.subscribe(
        topics.PSEUDONYMISED,
        group_id=f"{settings.group_id}-pseudonymised",
        handler=on_records_pseudonymised,
        title=f"{topics.PSEUDONYMISED}:submission",
        description=(
            "Pseudonymised records (by LA, source, event id and purpose) for exports to recipients other than "
            "NHS England."
        ),
    )
