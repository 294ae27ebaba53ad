"""Reading a raw-topic message as a CLD record: pure functions over the message's bytes, key and headers.

Anything that cannot be read as a record becomes a :class:`Rejected` with a bounded reason
(``DeadLetterReason``) and a detail that names fields or limits but never quotes a value.
Dates written ``YYYY-MM-DD`` (ISO 8601, allowed by the raw-topic contract) become the spec's ``dd/mm/yyyy``.

Tenancy (docs/governance.md): with a registry, the source a message names (header ``cld-source``) must be a
known source allowed for the record's LA; otherwise the message is rejected (``unknown_source`` before its
value is even decoded, ``source_not_allowed`` once its LA code is known). The Kafka principal (SASL or mTLS,
restricted by ACLs) is what authenticates the producer; the header is a claim checked here.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Final

from pydantic import ValidationError

from cld_governance.tenancy import Registry, authorise_source_id
from cld_runtime.messages import RawMessage
from cld_schemas import topics
from cld_schemas.contract import (
    HEADER_CHANNEL,
    HEADER_OPT_OUT,
    Action,
    is_la_code,
    iso_to_cld,
    opt_out_tokens,
    parse_opt_out_header,
)
from cld_schemas.events import DeadLetterReason
from cld_schemas.record import MAX_VALUE_LENGTH, CLDRecord
from cld_schemas.spec import load_spec

_TOKEN: Final = re.compile(r"[A-Za-z0-9._:@/+-]{1,128}")
_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_FUTURE: Final = timedelta(minutes=5)
"""Default clock skew allowed for a ``cld-received-at`` ahead of this service's clock."""
MAX_AGE: Final = timedelta(days=2 * 366)
"""Default age beyond which a ``cld-received-at`` is absurd (twice the rolling year a submission covers)."""
WITHDRAW: Final = Action.WITHDRAW.value
UPSERT: Final = Action.UPSERT.value


@dataclass(frozen=True, slots=True)
class Intake:
    """A readable record, with its provenance from the headers."""

    la_code: str
    record: dict[str, str | None]
    withdrawn: bool
    source: str
    event_id: str
    received_at: datetime
    channel: str
    opt_outs: tuple[str, ...] = ()
    """The ``cld-opt-out`` flags (sorted token values; ``unrecognised`` for unknown tokens: fail closed)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: DeadLetterReason
    detail: str


@cache
def date_fields() -> frozenset[str]:
    return frozenset(f.name for f in load_spec().fields if f.format == "date")


def normalise_dates(record: dict[str, str | None]) -> dict[str, str | None]:
    """``YYYY-MM-DD`` -> ``dd/mm/yyyy`` in date fields; anything else is left for the DQ rules to judge."""
    for name in date_fields():
        v = record.get(name)
        if v is not None and (cld := iso_to_cld(v)) is not None:
            record[name] = cld
    return record


@cache
def _field_names() -> tuple[str, ...]:
    return tuple(CLDRecord.model_fields)


def _fast_record(data: dict[str, Any]) -> dict[str, str | None] | None:
    """The common case without pydantic (it is most of the per-record cost): known keys, text or null values.

    Same result as ``CLDRecord.model_validate(data).values()``; None when the record model must judge.
    """
    names = _field_names()
    record: dict[str, str | None] = dict.fromkeys(names)
    for k, v in data.items():
        if k not in record:
            return None
        if v is None:
            continue
        if type(v) is not str or len(v) > MAX_VALUE_LENGTH:
            return None
        record[k] = v.strip() or None
    return record


def _looks_misspelt(name: str) -> bool:
    """Quote an unknown field name only when it is close to a spec field (a likely misspelling, worth naming).

    Any other name may be a value put where a name belongs (a person's name as a JSON key): never quoted.
    """
    return bool(_NAME.fullmatch(name)) and bool(difflib.get_close_matches(name, _field_names(), n=1, cutoff=0.75))


def _describe(exc: ValidationError) -> tuple[DeadLetterReason, str]:
    """Field names and error kinds only (``include_input=False``): values never leave."""
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"]]
    if unknown:
        named = sorted({n for n in unknown if _looks_misspelt(n)})[:10]
        others = len(unknown) - sum(1 for n in unknown if _looks_misspelt(n))
        parts = named + ([f"{others} other name(s) not in the specification"] if others else [])
        return DeadLetterReason.UNKNOWN_FIELD, "unknown field(s): " + ", ".join(parts)
    names = sorted({str(e["loc"][0])[:64] for e in errors if e["loc"]})
    # The same JSON type rules as the ingest API (cld_schemas.record): text or null, numbers only in numeric fields.
    return DeadLetterReason.WRONG_TYPE, (
        "field(s) whose value is not of a type the contract allows (text or null; a number only in a numeric "
        "field) or is too long: " + ", ".join(names[:10])
    )


def source_claim(msg: RawMessage) -> str | None:
    """The source id the message names in ``cld-source``, when it is a well-formed id (else None)."""
    claimed = msg.header(topics.HEADER_SOURCE)
    return claimed if claimed is not None and _TOKEN.fullmatch(claimed) else None


def _refused(tenants: Registry, claim: str | None, la_code: str) -> Rejected | None:
    decision = authorise_source_id(tenants, claim, la_code)
    if decision.allowed:
        return None
    return Rejected(decision.deadletter_reason or DeadLetterReason.UNKNOWN_SOURCE, decision.detail)


def read_message(
    msg: RawMessage,
    *,
    max_bytes: int,
    tenants: Registry | None = None,
    now: datetime | None = None,
    max_future: timedelta = MAX_FUTURE,
    max_age: timedelta = MAX_AGE,
) -> Intake | Rejected:
    """Decode, check and normalise one raw-topic message (issue 3's public contract). Never raises for any
    bytes, key or headers: what cannot be read is a :class:`Rejected`.

    ``tenants``: the registry whose sources may publish (None or open mode: every source for every LA).
    ``now``, ``max_future``, ``max_age``: the window a received-at time must fall in to be trusted
    (:func:`received_at`).
    """
    if (problem := msg.header_problem()) is not None:
        # Before anything else: a header that cannot be read or is given twice is never guessed at.
        return Rejected(problem.reason, problem.detail)
    enforce = tenants is not None and not tenants.open_mode
    claim = source_claim(msg)
    if enforce and tenants is not None and (claim is None or tenants.source(claim) is None):
        # Before decoding: nothing from an unknown producer is read further than its headers.
        return Rejected(DeadLetterReason.UNKNOWN_SOURCE, "the cld-source header names no source of this deployment")
    value = msg.value
    if value is None or not value:
        return Rejected(DeadLetterReason.NOT_AN_OBJECT, "the message has no value (empty or tombstone)")
    if len(value) > max_bytes:
        return Rejected(DeadLetterReason.TOO_LARGE, f"the message value is larger than {max_bytes} bytes")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected(DeadLetterReason.NOT_UTF8, "the message value is not UTF-8 text")
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and integers longer than Python's 4300-digit limit;
        # RecursionError, nesting deeper than the decoder's recursion limit.
        return Rejected(DeadLetterReason.NOT_JSON, "the message value is not JSON (or nested or sized beyond limits)")
    if not isinstance(data, dict):
        return Rejected(DeadLetterReason.NOT_AN_OBJECT, "the message value is JSON but not an object")
    record = _fast_record(data)
    if record is None:  # something unusual: let the record model decide, and say what is wrong
        try:
            record = CLDRecord.model_validate(data).values()
        except ValidationError as exc:
            reason, detail = _describe(exc)
            return Rejected(reason, detail)

    key_text: str | None = None
    if msg.key:
        try:
            key_text = msg.key.decode("ascii").strip() or None
        except UnicodeDecodeError:
            return Rejected(DeadLetterReason.MISSING_LA_CODE, "the message key is not an LA code (not ASCII text)")
    body_la = record.get("la_code")
    if key_text is not None and body_la is not None and key_text != body_la:
        return Rejected(DeadLetterReason.LA_CODE_MISMATCH, "the message key and the record's la_code differ")
    la_code = key_text or body_la
    if la_code is None:
        return Rejected(DeadLetterReason.MISSING_LA_CODE, "no LA code: neither a message key nor la_code")
    if not is_la_code(la_code):
        # The LA code routes the record (Kafka key, submission per LA, metric label): it must be one.
        return Rejected(DeadLetterReason.MISSING_LA_CODE, "the LA code is not a 3-digit code")
    if enforce and tenants is not None and (refusal := _refused(tenants, claim, la_code)) is not None:
        return refusal
    record["la_code"] = la_code

    action = (msg.header(topics.HEADER_ACTION) or UPSERT).lower()
    if action not in (UPSERT, WITHDRAW):
        # Never guessed: a source that meant "delete" must not have its record kept as an upsert.
        return Rejected(DeadLetterReason.UNKNOWN_ACTION, "the cld-action header is neither upsert nor withdraw")
    source = claim or ("invalid" if msg.header(topics.HEADER_SOURCE) else "unknown")
    event_id = msg.header(topics.HEADER_EVENT_ID)
    if event_id is None or not _TOKEN.fullmatch(event_id):
        # No (usable) idempotency key: the message's position is its identity, so a re-delivery of the same
        # message (at-least-once) keeps the same id and downstream dedupes it.
        event_id = f"kafka:{msg.topic}:{msg.partition}:{msg.offset}"
    return Intake(
        la_code=la_code,
        record=normalise_dates(record),
        withdrawn=action == WITHDRAW,
        source=source,
        event_id=event_id,
        received_at=received_at(msg, now=now or datetime.now(UTC), max_future=max_future, max_age=max_age),
        channel=channel if (channel := msg.header(HEADER_CHANNEL)) in ("http", "csv") else "kafka",
        opt_outs=opt_out_tokens(parse_opt_out_header(msg.headers.get(HEADER_OPT_OUT))),
    )


def received_at(
    msg: RawMessage, *, now: datetime, max_future: timedelta = MAX_FUTURE, max_age: timedelta = MAX_AGE
) -> datetime:
    """When the record was received: the ``cld-received-at`` header, else the broker's timestamp, else now.

    A time is trusted only inside ``[now - max_age, now + max_future]`` (issue 10, finding 9): the source
    chooses both the header and the producer timestamp, and the received-at time orders versions of a record
    in the submission state and drives the freshness gauge. A header in 2999 would have pinned the record
    against every later correction and switched off the freshness alert. An untrusted header falls back to the
    broker timestamp, an untrusted timestamp to now; the record itself is kept (its content is not at fault).
    """
    earliest, latest = now - max_age, now + max_future
    stamped = msg.header(topics.HEADER_RECEIVED_AT)
    if stamped is not None:
        try:
            at = datetime.fromisoformat(stamped)
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            if earliest <= at <= latest:
                return at
        except (ValueError, OverflowError):
            pass
    if msg.timestamp_ms is not None and msg.timestamp_ms >= 0:
        try:
            at = datetime.fromtimestamp(msg.timestamp_ms / 1000, UTC)
        except (ValueError, OverflowError, OSError):
            return now
        if earliest <= at <= latest:
            return at
    return now
