"""What the ingest service does to a record before publishing: pure functions, no HTTP or Kafka.

The raw-topic contract (docs/contract.md): key = the LA code, value = one JSON object of spec fields by
snake_case name (blank fields left out), headers ``cld-source``, ``cld-event-id``, ``cld-received-at`` and,
when the source flagged the person's opt-outs, ``cld-opt-out`` (metadata, never a CLD column).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cld_schemas import topics
from cld_schemas.contract import (
    HEADER_CHANNEL,
    HEADER_OPT_OUT,
    OptOut,
    is_la_code,
    opt_out_header,
    parse_opt_out_header,
)

ID_PATTERN: Final = r"^[A-Za-z0-9._:@/+-]{1,128}$"
"""Source ids and idempotency keys: bounded, printable, no spaces (they travel as headers and log fields)."""
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
RELEASE_PATTERN: Final = r"^\s*(?i:release\s*)?[rR]?[12]\s*$"
"""The ``cld-release`` request header: the specification release the records are written to (r1 or r2)."""
OPT_OUT_PATTERN: Final = r"^[A-Za-z0-9 ,._-]{0,200}$"
"""The ``cld-opt-out`` request header: comma-separated tokens (docs/governance.md, "Opt-out and objection flags")."""


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
    if not is_la_code(la):
        raise EnvelopeError("the LA code is not a 3-digit code")
    return la


def opt_out_value(header: str | None) -> str | None:
    """The canonical ``cld-opt-out`` value for a request's header, or None when it names no opt-out.

    The Kafka topics treat an unrecognised token as an opt-out (fail closed); over HTTP the caller is there to
    be told, so an unrecognised token is refused instead of guessed at.
    """
    flags = parse_opt_out_header(header)
    if OptOut.UNRECOGNISED in flags:
        known = ", ".join(f.value for f in OptOut if f is not OptOut.UNRECOGNISED)
        raise EnvelopeError(f"the {HEADER_OPT_OUT} header holds a token that is not one of: {known}")
    return opt_out_header(flags) or None


def release_value(header: str | None) -> str | None:
    """The canonical ``cld-release`` value (``r1``/``r2``) for a request's header; None when not given."""
    if header is None or not header.strip():
        return None
    digit = header.strip()[-1]
    if digit not in "12":
        raise EnvelopeError(f"the {topics.HEADER_RELEASE} header must be r1 or r2")
    return f"r{digit}"


def safe_field_name(name: str, known: Iterable[str]) -> str:
    """A submitted field name fit for an error message: quoted only when it looks like a misspelt spec field.

    A name the caller made up may be a value put where a name belongs (a person's name as a JSON key, a data row
    taken for a CSV header), so anything that is not close to a spec field name is described, never quoted.
    """
    if _NAME.fullmatch(name) and difflib.get_close_matches(name, list(known), n=1, cutoff=0.75):
        return name
    return "(a field name that is not in the specification)"


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
    opt_out: str | None = None,
    release: str | None = None,
) -> Envelope:
    """``event_id`` None: derived from the content (CSV rows), so re-sending the same row is idempotent.

    ``source`` is the authenticated source's id (never a client header); ``opt_out`` the canonical
    ``cld-opt-out`` value (:func:`opt_out_value`), passed through as a Kafka header; ``release`` the canonical
    ``cld-release`` value (:func:`release_value`), passed through too. A row uploaded again with another release
    is another event (its content id includes the release), so the re-checked version replaces the first.
    """
    value = record_value(record, la_code)
    if event_id is None:
        event_id = content_event_id(la_code, value + (f"\ncld-release={release}".encode() if release else b""))
    headers = {
        topics.HEADER_SOURCE: source,
        topics.HEADER_EVENT_ID: event_id,
        topics.HEADER_RECEIVED_AT: received_at.isoformat(),
        HEADER_CHANNEL: channel,
    }
    if opt_out:
        headers[HEADER_OPT_OUT] = opt_out
    if release:
        headers[topics.HEADER_RELEASE] = release
    return Envelope(la_code=la_code, event_id=event_id, value=value, headers=headers)
