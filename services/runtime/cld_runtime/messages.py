"""Kafka records as plain data, so service code and tests need no aiokafka types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from faststream.kafka.message import KafkaMessage

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
