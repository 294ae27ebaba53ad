"""The one Kafka consumer of every service: subscriber options, decode-or-dead-letter, publish-and-count.

Validation, pseudonymisation and submission consume the same way (issue 11 item 4): batches of records with
FastStream's parsing and decoding turned off (``messages.tolerant_parser``, ``messages.undecoded``), offsets
committed only after the handler returns (``AckPolicy.NACK_ON_ERROR``), and for every record exactly one
outcome: forwarded, stored or dead-lettered (``accounting``). :meth:`Consumer.subscribe` registers such a
subscriber; the service's handler gets a :class:`ConsumedBatch`, which reads each message once
(:meth:`ConsumedBatch.decode`), publishes or dead-letters it without waiting for each delivery, and when the
handler returns the consumer confirms every delivery, counts the published records and the outcomes, and only
then lets FastStream commit the offsets (at-least-once).

Typing: the handler is a plain ``async def (ConsumedBatch) -> None``; the helper builds the FastStream handler
around it and registers it with ``broker.subscriber(...)`` itself, so FastStream's decorator typing is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError

from cld_runtime.accounting import ConsumerAccounting, Outcome
from cld_runtime.broker import BatchPublisher
from cld_runtime.deadletter import DeadLetterPublisher, dead_letter_for
from cld_runtime.messages import RawMessage, raw_messages, tolerant_parser, undecoded, unreadable_reason
from cld_runtime.settings import Settings
from cld_schemas import topics
from cld_schemas.events import DeadLetterReason

Event = TypeVar("Event", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Why a message cannot be read as its topic's event (the reason and words only, never a value)."""

    reason: DeadLetterReason
    detail: str


def read_event(msg: RawMessage, model: type[Event]) -> Event | Unreadable:
    """The event in one message, or why it cannot be read: pure, the one decode of a consumed record.

    Headers are checked first (a header that is not UTF-8 or a ``cld-*`` header given twice refuses the whole
    message, :meth:`RawMessage.header_problem`), then the value is validated once against the topic's model.
    """
    if (problem := msg.header_problem()) is not None:
        return Unreadable(problem.reason, problem.detail)
    try:
        return model.model_validate_json(msg.value or b"")
    except ValidationError as exc:
        return Unreadable(
            unreadable_reason(msg.value, exc), f"not a {model.__name__} event ({exc.error_count()} error(s))"
        )


@dataclass(eq=False)
class ConsumedBatch:
    """One consumed batch: its records in offset order, and what became of each so far.

    Every record must end in exactly one of :meth:`forward`, :meth:`dead_letter` or :meth:`stored` (counted
    per outcome; the consumer logs an error when the counts do not add up to the batch).
    """

    topic: str
    """The consumed topic's contract name (unprefixed): the accounting label."""
    messages: Sequence[RawMessage]
    consumer: Consumer
    pending: list[asyncio.Future[Any]] = field(default_factory=list)
    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    publishers: set[BatchPublisher] = field(default_factory=set)

    async def decode(self, msg: RawMessage, model: type[Event]) -> Event | None:
        """The event in ``msg``, or None once it is dead-lettered (a message that cannot be read never stalls
        the partition)."""
        try:
            event = read_event(msg, model)
        except Exception as exc:  # an unforeseen input must not stall the partition either
            self.consumer.log.exception(
                "reading failed", extra={"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}
            )
            event = Unreadable(DeadLetterReason.PROCESSING_ERROR, f"reading failed ({type(exc).__name__})")
        if isinstance(event, Unreadable):
            await self.dead_letter(msg, event.reason, event.detail)
            return None
        return event

    async def forward(
        self, publisher: BatchPublisher, value: bytes, *, key: bytes | None, headers: Mapping[str, str]
    ) -> None:
        """Publish one record's output on the next topic (delivery confirmed when the handler returns)."""
        self.publishers.add(publisher)
        self._pending(await publisher.send(value, key=key, headers=headers))
        self.outcomes[Outcome.FORWARDED] += 1

    async def dead_letter(self, msg: RawMessage, reason: DeadLetterReason, detail: str) -> None:
        """Dead-letter one record: a pointer and the reason, never its payload (``cld_runtime.deadletter``)."""
        self.consumer.log.warning(
            "dead letter",
            extra={"reason": reason.value, "topic": msg.topic, "partition": msg.partition, "offset": msg.offset},
        )
        deadletters = self.consumer.deadletters
        letter = dead_letter_for(
            reason=reason,
            detail=detail,
            payload=msg.value,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            service=deadletters.service,
            at=datetime.now(UTC),
            fingerprint_key=deadletters.fingerprint_key,
        )
        self._pending(await deadletters.publish(letter, confirm=False))
        self.outcomes[Outcome.DEADLETTERED] += 1

    def stored(self, n: int = 1) -> None:
        """``n`` records kept in the service's own state (already durable when this is called)."""
        self.outcomes[Outcome.STORED] += n

    def _pending(self, future: asyncio.Future[Any] | None) -> None:
        if future is not None:
            self.pending.append(future)

    async def confirm(self) -> None:
        """Every delivery confirmed, then the published records and the outcomes counted (once per batch).

        A failed delivery raises here: nothing is counted, the offsets are not committed and the batch is
        consumed again (``AckPolicy.NACK_ON_ERROR``)."""
        await asyncio.gather(*self.pending)
        for publisher in self.publishers:
            publisher.count_published()
        accounted = sum(self.outcomes.values())
        if accounted != len(self.messages):
            self.consumer.log.error(
                "a consumed batch's outcomes do not add up to its records",
                extra={"topic": self.topic, "records": len(self.messages), "outcomes": accounted},
            )
        self.consumer.accounting.batch(self.topic, self.outcomes)


BatchHandler = Callable[[ConsumedBatch], Awaitable[None]]
"""A service's handler of one consumed batch."""


@dataclass(frozen=True, slots=True)
class Consumer:
    """What a service's consumers share: its broker, settings, dead letters, accounting and log."""

    broker: KafkaBroker
    settings: Settings
    deadletters: DeadLetterPublisher
    accounting: ConsumerAccounting
    log: logging.Logger

    @classmethod
    def create(
        cls,
        broker: KafkaBroker,
        settings: Settings,
        *,
        registry: CollectorRegistry,
        consumed: Sequence[str],
        log: logging.Logger,
    ) -> Consumer:
        """The consumer of one service process: its dead-letter publisher (on the prefixed dead-letter topic,
        with the deployment's dead-letter key) and the accounting of the ``consumed`` contract topics."""
        service = settings.service_name
        deadletters = DeadLetterPublisher(
            broker,
            topic=settings.topic(topics.DEADLETTER),
            service=service,
            registry=registry,
            fingerprint_key=settings.deadletter_fingerprint_key(),
        )
        accounting = ConsumerAccounting(registry, service=service, topics=consumed)
        return cls(broker, settings, deadletters, accounting, log)

    def subscribe(
        self,
        topic: str,
        *,
        group_id: str,
        handler: BatchHandler,
        title: str,
        description: str,
    ) -> None:
        """Register a batch subscriber on the (prefixed) contract ``topic`` that hands each batch to ``handler``
        and confirms and counts it (:meth:`ConsumedBatch.confirm`) before its offsets are committed."""

        async def on_batch(message: KafkaMessage) -> None:
            batch = ConsumedBatch(topic=topic, messages=raw_messages(message), consumer=self)
            await handler(batch)
            await batch.confirm()

        self.broker.subscriber(
            self.settings.topic(topic),
            group_id=group_id,
            batch=True,
            max_records=self.settings.consumer_max_records,
            batch_timeout_ms=self.settings.consumer_batch_timeout_ms,
            auto_offset_reset="earliest",
            # Offsets are committed only once the handler returned: a failed publish or store raises, nothing
            # is committed and the batch is consumed again.
            ack_policy=AckPolicy.NACK_ON_ERROR,
            parser=tolerant_parser,
            decoder=undecoded,
            title=title,
            description=description,
        )(on_batch)
