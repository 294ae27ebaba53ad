"""Kafka records as plain data, so service code and tests need no aiokafka types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from faststream.kafka.message import KafkaMessage
from faststream.message import StreamMessage
from pydantic import ValidationError

from cld_schemas.events import DeadLetterReason

HEADER_CHANNEL: Final = "cld-channel"
"""Internal header set by the ingest service (``http`` or ``csv``); absent when a source publishes directly."""


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed Kafka record: value, key, headers (lower-cased names) and its position."""

    value: bytes | None
    key: bytes | None
    headers: Mapping[str, bytes]
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None

    def header(self, name: str) -> str | None:
        raw = self.headers.get(name)
        if raw is None:
            return None
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            return None
        return text or None


def raw_messages(message: KafkaMessage) -> list[RawMessage]:
    """The records of a (batch or single) FastStream Kafka message, in offset order."""
    raw: Any = message.raw_message
    records: Sequence[Any] = raw if isinstance(raw, list | tuple) else (raw,)
    return [
        RawMessage(
            value=r.value,
            key=r.key if isinstance(r.key, bytes) else (str(r.key).encode() if r.key is not None else None),
            headers={k.lower(): (v if isinstance(v, bytes) else str(v).encode()) for k, v in (r.headers or ())},
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            timestamp_ms=r.timestamp,
        )
        for r in records
    ]


async def undecoded(message: StreamMessage[Any]) -> None:
    """A FastStream decoder that decodes nothing (``subscriber(..., decoder=undecoded)``).

    FastStream's default decoder json-loads every body before the handler runs and lets a RecursionError (deep
    nesting) or a ValueError (an integer over Python's 4300-digit limit) escape: the batch would be nacked and
    re-read for ever, stalling the partition. Handlers read each record themselves and dead-letter what they
    cannot read (``unreadable_reason``).
    """


def unreadable_reason(value: bytes | None, exc: ValidationError) -> DeadLetterReason:
    """Why a message could not be read as an event envelope (the reason only: never a value from the payload)."""
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    if not value:
        return DeadLetterReason.NOT_AN_OBJECT  # empty value or tombstone
    if any(e["type"] == "json_invalid" for e in errors):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return DeadLetterReason.NOT_UTF8
        return DeadLetterReason.NOT_JSON
    if any(e["type"] == "model_type" and not e["loc"] for e in errors):
        return DeadLetterReason.NOT_AN_OBJECT  # a JSON array, string, number or null
    return DeadLetterReason.WRONG_TYPE
