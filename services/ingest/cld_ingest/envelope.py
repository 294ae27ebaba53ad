"""What the ingest service does to a record before publishing: pure functions, no HTTP or Kafka.

The raw-topic contract (docs/contract.md): key = the LA code, value = one JSON object of spec fields by
snake_case name (blank fields left out), headers ``cld-source``, ``cld-event-id``, ``cld-received-at``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cld_runtime.messages import HEADER_CHANNEL
from cld_schemas import topics

LA_CODE_PATTERN: Final = r"^\d{3}$"
ID_PATTERN: Final = r"^[A-Za-z0-9._:@/+-]{1,128}$"
"""Source ids and idempotency keys: bounded, printable, no spaces (they travel as headers and log fields)."""
_LA_CODE = re.compile(LA_CODE_PATTERN)


class EnvelopeError(ValueError):
    """The request cannot be published as it is. Messages never quote a record value."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One record ready for the raw topic."""

    la_code: str
    event_id: str
    value: bytes
    headers: dict[str, str]


def resolve_la_code(record_la: str | None, given: str | None) -> str:
    """The LA code from the record or from the request (header / query); they must agree."""
    if record_la is not None and given is not None and record_la != given:
        raise EnvelopeError("the record's la_code differs from the LA code given with the request")
    la = record_la or given
    if la is None:
        raise EnvelopeError("no LA code: give la_code in the record or the X-CLD-LA header")
    if not _LA_CODE.match(la):
        raise EnvelopeError("the LA code is not a 3-digit code")
    return la


def record_value(record: Mapping[str, str | None], la_code: str) -> bytes:
    """The public JSON value: spec fields by snake_case name, blanks left out, la_code filled in."""
    out = {k: v for k, v in record.items() if v is not None}
    out["la_code"] = la_code
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def content_event_id(la_code: str, value: bytes) -> str:
    """Idempotency key of a CSV row: the same row of the same LA gives the same id (re-uploads are no-ops)."""
    return "csv:" + hashlib.sha256(la_code.encode() + b"\n" + value).hexdigest()


def envelope(
    record: Mapping[str, str | None],
    *,
    la_code: str,
    event_id: str | None,
    source: str,
    received_at: datetime,
    channel: str,
) -> Envelope:
    """``event_id`` None: derived from the content (CSV rows), so re-sending the same row is idempotent."""
    value = record_value(record, la_code)
    if event_id is None:
        event_id = content_event_id(la_code, value)
    return Envelope(
        la_code=la_code,
        event_id=event_id,
        value=value,
        headers={
            topics.HEADER_SOURCE: source,
            topics.HEADER_EVENT_ID: event_id,
            topics.HEADER_RECEIVED_AT: received_at.isoformat(),
            HEADER_CHANNEL: channel,
        },
    )
