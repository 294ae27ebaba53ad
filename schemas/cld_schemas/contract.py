"""The raw-record contract, defined once: header names, the LA-code pattern, the date forms and the opt-out flags.

Every service, the CLI and the tests take these from here (issue 11 item 3: they were written several times, and
differed: one LA-code check let Unicode digits through, another a trailing newline). ``cld_schemas.topics``
re-exports the header names it always had; ``cld_governance.sharing`` re-exports the opt-out flags.

Each topic's message (:data:`MESSAGES`) is its payload model, the model of its headers and what its key is: the
AsyncAPI document (``cld asyncapi``) describes every topic from this table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

# -- header names ------------------------------------------------------------------------------------------

CONTRACT_HEADER_PREFIX: Final = "cld-"
"""Headers of the contract: each may appear at most once per message (or repeated with the same value)."""
HEADER_SOURCE: Final = "cld-source"
HEADER_EVENT_ID: Final = "cld-event-id"
HEADER_RECEIVED_AT: Final = "cld-received-at"
HEADER_ACTION: Final = "cld-action"
"""Optional: ``upsert`` (default) or ``withdraw`` (the source withdraws a record it sent earlier)."""
HEADER_RELEASE: Final = "cld-release"
"""Optional: ``r1`` or ``r2``, the specification release the record is written to (overrides the release in
force for its reporting period and the source's configured release)."""
HEADER_OPT_OUT: Final = "cld-opt-out"
"""Set by the source system (Kafka header or HTTP header) naming the person's opt-outs (:class:`OptOut`)."""
HEADER_CHANNEL: Final = "cld-channel"
"""Internal header set by the ingest service (``http`` or ``csv``); absent when a source publishes directly."""
HEADER_SUBMISSION_ID: Final = "cld-submission-id"
"""On ``cld.submissions.v1``: the submission the event is a step of."""
HEADER_DEADLETTER_REASON: Final = "cld-deadletter-reason"
"""On ``cld.deadletter.v1``: the dead letter's reason (a ``DeadLetterReason`` value)."""


class Action(StrEnum):
    """The ``cld-action`` header's values: anything else is dead-lettered (``unknown_action``), never guessed."""

    UPSERT = "upsert"
    WITHDRAW = "withdraw"


# -- LA codes ----------------------------------------------------------------------------------------------

LA_CODE_PATTERN: Final = r"^[0-9]{3}$"
"""An LA code: three ASCII digits, e.g. 318 (the spec's LA Code format is inferred: ``cld spec gaps``). A JSON
Schema / pydantic ``pattern``; use :func:`is_la_code` in code (``$`` alone would let a trailing newline in)."""
_LA_CODE: Final = re.compile(r"[0-9]{3}")


def is_la_code(text: str) -> bool:
    """Whether ``text`` is exactly an LA code (three ASCII digits; no Unicode digits, no whitespace)."""
    return _LA_CODE.fullmatch(text) is not None


# -- dates -------------------------------------------------------------------------------------------------

CLD_DATE_FORM: Final = "dd/mm/yyyy"
"""The CLD date form (R-FLD-24): what the DQ rules accept and what every record on the validated topic holds."""
ISO_DATE_FORM: Final = "yyyy-mm-dd"
"""ISO 8601, also accepted on the raw topic (turned into :data:`CLD_DATE_FORM` before the DQ rules run)."""
_ISO_DATE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


def parse_date(value: str | None) -> date | None:
    """The date a CLD value names, or None for blank or anything that is not a real date in one of the two
    forms (:data:`CLD_DATE_FORM`, :data:`ISO_DATE_FORM`; surrounding whitespace ignored, ASCII digits only).

    The one date parser of the record path (validation's release choice, pseudonymisation's generalisation,
    submission's scope and identity): the DQ rules, which must say *why* a value is not a date, have their own
    check (``cld_validation.rules``).
    """
    if value is None:
        return None
    text = value.strip()
    if len(text) != 10 or not text.isascii():
        return None
    if text[2] == "/" and text[5] == "/":
        ys, ms, ds = text[6:], text[3:5], text[:2]
    elif text[4] == "-" and text[7] == "-":
        ys, ms, ds = text[:4], text[5:7], text[8:]
    else:
        return None
    if not (ys.isdigit() and ms.isdigit() and ds.isdigit()):
        return None
    try:
        return date(int(ys), int(ms), int(ds))
    except ValueError:  # 31/02, month 13, year 0
        return None


def cld_date(day: date) -> str:
    """A date in the CLD form (:data:`CLD_DATE_FORM`)."""
    return f"{day.day:02d}/{day.month:02d}/{day.year:04d}"


def iso_to_cld(value: str) -> str | None:
    """``yyyy-mm-dd`` rewritten as ``dd/mm/yyyy`` (digits kept as sent: the DQ rules judge the date), or None
    when the value is not in the ISO form."""
    m = _ISO_DATE.fullmatch(value)
    return None if m is None else f"{m[3]}/{m[2]}/{m[1]}"


# -- opt-out flags -----------------------------------------------------------------------------------------


class OptOut(StrEnum):
    """The ``cld-opt-out`` tokens: source metadata, never a CLD column (docs/governance.md)."""

    NATIONAL_DATA_OPT_OUT = "national-data-opt-out"
    """The person registered a national data opt-out (research and planning uses of confidential data)."""
    OBJECTION = "objection"
    """The person objected to the LA (UK GDPR right to object) to this kind of sharing."""
    UNRECOGNISED = "unrecognised"
    """A token this version does not know: treated as an opt-out (fail closed). Never sent by sources."""


def parse_opt_out_header(value: str | bytes | None) -> frozenset[OptOut]:
    """The opt-outs named in a ``cld-opt-out`` header value ('' or None: none). Never raises."""
    if value is None:
        return frozenset()
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    flags: set[OptOut] = set()
    for token in text.split(","):
        token = token.strip().lower()
        if not token:
            continue
        try:
            flags.add(OptOut(token))
        except ValueError:
            flags.add(OptOut.UNRECOGNISED)
    return frozenset(flags)


def opt_out_header(flags: Iterable[OptOut]) -> str:
    """The header value for these flags (for sources, tests and the synthetic generator)."""
    return ",".join(sorted(f.value for f in flags if f is not OptOut.UNRECOGNISED))


def opt_out_tokens(flags: Iterable[OptOut]) -> tuple[str, ...]:
    """The flags as the sorted token values a ``Provenance`` carries (``unrecognised`` kept: fail closed)."""
    return tuple(sorted(f.value for f in flags))


# -- the headers of each topic, as models (for the AsyncAPI document) ----------------------------------------


_Text = Annotated[str | None, WithJsonSchema({"type": "string"})]
"""An optional header: absent, or text (a Kafka header has no null)."""


class _Headers(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class RawRecordHeaders(_Headers):
    """Headers of a message on ``cld.events.raw.v1``. Each ``cld-*`` header at most once (or with one value)."""

    source: _Text = Field(
        default=None,
        alias=HEADER_SOURCE,
        description="The source system's id (tenants registry). Required when tenancy is enforced.",
    )
    event_id: _Text = Field(
        default=None,
        alias=HEADER_EVENT_ID,
        description="Idempotency key: the same id sent twice is one record (default: derived from the content).",
    )
    received_at: _Text = Field(
        default=None, alias=HEADER_RECEIVED_AT, description="ISO 8601 time the record was received (ingest)."
    )
    action: Annotated[Action | None, WithJsonSchema({"type": "string", "enum": [a.value for a in Action]})] = Field(
        default=None, alias=HEADER_ACTION, description="upsert (default) or withdraw."
    )
    release: _Text = Field(
        default=None, alias=HEADER_RELEASE, description="r1 or r2: the release the record is written to."
    )
    opt_out: _Text = Field(
        default=None,
        alias=HEADER_OPT_OUT,
        description="Comma-separated opt-out tokens: national-data-opt-out, objection.",
    )
    channel: _Text = Field(default=None, alias=HEADER_CHANNEL, description="Set by the ingest service: http or csv.")


class RecordHeaders(_Headers):
    """Headers of a message on ``cld.records.validated.v1`` and ``cld.records.pseudonymised.v1``."""

    event_id: str = Field(alias=HEADER_EVENT_ID, description="The record's idempotency key (as in its provenance).")
    source: _Text = Field(default=None, alias=HEADER_SOURCE, description="The source system (validated topic only).")
    opt_out: _Text = Field(
        default=None,
        alias=HEADER_OPT_OUT,
        description="The source's opt-out tokens (validated topic only; also in the body's provenance).",
    )


class SubmissionHeaders(_Headers):
    """Headers of a message on ``cld.submissions.v1``."""

    submission_id: str = Field(alias=HEADER_SUBMISSION_ID, description="The submission the step belongs to.")


class DeadLetterHeaders(_Headers):
    """Headers of a message on ``cld.deadletter.v1``."""

    reason: str = Field(alias=HEADER_DEADLETTER_REASON, description="The dead letter's reason.")


@dataclass(frozen=True, slots=True)
class MessageContract:
    """What a topic's messages are: the payload's model name, the headers' model and what the key is."""

    payload: str
    """The name of the payload's schema (a model of ``cld_schemas``: ``CLDRecord``, ``RecordValidated``...)."""
    headers: type[BaseModel]
    key: str
    """What the message key holds, in words."""
    key_pattern: str | None = LA_CODE_PATTERN
    """The key's pattern, when every key has one."""


LA_CODE_KEY: Final = "The LA code (3 ASCII digits, e.g. 318): records of one LA stay in order on one partition."
