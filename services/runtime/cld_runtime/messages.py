"""Kafka records as plain data, so service code and tests need no aiokafka types."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from faststream.kafka.message import KafkaMessage
from faststream.message import StreamMessage
from pydantic import ValidationError

from cld_schemas.contract import CONTRACT_HEADER_PREFIX
from cld_schemas.events import DeadLetterReason


@dataclass(frozen=True, slots=True)
class HeaderProblem:
    """Why a message's headers cannot be trusted (the reason and header name only, never a value)."""

    reason: DeadLetterReason
    detail: str


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
    header_items: tuple[tuple[str, bytes], ...] = ()
    """Every header as sent, in order, duplicates included (names lower-cased); ``headers`` keeps one value
    per name and is only meaningful when :meth:`header_problem` is None."""

    def header_problem(self) -> HeaderProblem | None:
        """A header value that is not UTF-8 text, or a ``cld-*`` header given twice with different values.

        Such a message is refused as a whole (dead-lettered by the consumer), never read with a guess: a
        header that cannot be read may carry the source or the action, and with two values "last wins" would
        let whoever adds a header override the one the source set.
        """
        seen: dict[str, bytes] = {}
        for name, value in self.header_items or tuple(self.headers.items()):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return HeaderProblem(
                    DeadLetterReason.UNREADABLE_HEADER, f"the value of header {_safe_name(name)} is not UTF-8 text"
                )
            if name.startswith(CONTRACT_HEADER_PREFIX):
                first = seen.setdefault(name, value)
                if first != value:
                    return HeaderProblem(
                        DeadLetterReason.AMBIGUOUS_HEADER,
                        f"header {_safe_name(name)} is given more than once with different values",
                    )
        return None

    def header(self, name: str) -> str | None:
        raw = self.headers.get(name)
        if raw is None:
            return None
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            return None
        return text or None


_HEADER_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _safe_name(name: str) -> str:
    """A header name fit for a dead letter's detail (names are chosen by the sender: quoted only when tame)."""
    return repr(name) if _HEADER_NAME.fullmatch(name) else "(a header with an unusual name)"


def _raw_message(r: Any) -> RawMessage:
    items = tuple(
        (str(k).lower(), v if isinstance(v, bytes) else (b"" if v is None else str(v).encode()))
        for k, v in (r.headers or ())
    )
    return RawMessage(
        value=r.value,
        key=r.key if isinstance(r.key, bytes) else (str(r.key).encode() if r.key is not None else None),
        headers=dict(reversed(items)),  # the first value of a name (ambiguity is refused anyway)
        topic=r.topic,
        partition=r.partition,
        offset=r.offset,
        timestamp_ms=r.timestamp,
        header_items=items,
    )


def raw_messages(message: KafkaMessage) -> list[RawMessage]:
    """The records of a (batch or single) FastStream Kafka message, in offset order."""
    raw: Any = message.raw_message
    records: Sequence[Any] = raw if isinstance(raw, list | tuple) else (raw,)
    return [_raw_message(r) for r in records]


def _without_headers(record: Any) -> Any:
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.replace(record, headers=[])
    return record


async def tolerant_parser(records: Any, default: Callable[[Any], Awaitable[StreamMessage[Any]]]) -> StreamMessage[Any]:
    """A FastStream parser (``subscriber(..., parser=tolerant_parser)``) that never decodes a header.

    FastStream's Kafka parsers decode every header value as UTF-8 before the handler runs: one non-UTF-8
    value (``cld-source: b"\\xff\\xfe"``) raised inside the consumer loop and the rest of its batch was lost
    without a dead letter (issue 10, finding 1). Here the default parser sees the records without headers (so
    it cannot fail on them, and still binds the consumer for the commit) and the message keeps the original
    records as ``raw_message``: every record reaches the handler, which reads headers itself
    (:func:`raw_messages`) and dead-letters what it cannot read (:meth:`RawMessage.header_problem`).
    """
    stripped = (
        tuple(_without_headers(r) for r in records) if isinstance(records, list | tuple) else _without_headers(records)
    )
    message = await default(stripped)
    message.raw_message = records
    return message


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
