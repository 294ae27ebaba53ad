"""The record facts the submission state holds and hands on: what applying a record did, a stored in-scope
record, a held record left out of a period, a consumed record with its Kafka position, one row's failures. Pure.

The record store adapters (``adapters.sqlite_record_store``) produce and consume these; the service layer, the
dataset checks and the file assembly read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import NamedTuple

from cld_governance.sharing import OptOut, parse_opt_out_header
from cld_schemas.events import RecordValidated

from .identity import Kind


class Applied(StrEnum):
    """What applying one validated record did (bounded: usable as a metric label)."""

    INSERTED = "inserted"
    REPLACED = "replaced"
    WITHDRAWN = "withdrawn"
    STALE = "stale"
    """An older version than the one held: ignored."""
    DUPLICATE_EVENT = "duplicate_event"
    """The same (LA, source, event id) was applied before (a repeat, or a redelivery after a restart): no-op."""


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One in-scope record as assembly and the checks see it."""

    record_key: str
    kind: Kind
    event_type: str | None
    client_type: str | None
    person_key: str | None
    start: date | None
    derived_end: date | None
    record: dict[str, str | None]
    findings: tuple[tuple[str, str, str], ...]
    """(field header, rule id, validity) of each failed field."""
    failed: bool
    opt_out: bool
    content_hash: str
    event_id: str = ""
    """The event id of the version held (with ``source``, joins to its pseudonymised form)."""
    opt_outs: frozenset[OptOut] = frozenset()
    """The source's opt-out/objection flags (``opt_out`` is ``bool(opt_outs)``)."""
    source: str = ""
    """The source of the version held ('' for a record applied before the source was kept)."""
    finding_notes: tuple[tuple[str, str, str], ...] = ()
    """(status, message, fix) of each of ``findings``, in order ('' for what was stored before it was kept)."""


@dataclass(frozen=True, slots=True)
class HeldOut:
    """A held record the period's file leaves out: its scope facts and reference (no personal data)."""

    record_key: str
    kind: Kind
    start: date | None
    derived_end: date | None
    death: date | None
    event_reference: str | None


@dataclass(frozen=True, slots=True)
class Incoming:
    """A validated record with where it came from on Kafka (offsets are None outside Kafka)."""

    event: RecordValidated
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


def opt_outs_of(event: RecordValidated) -> frozenset[OptOut]:
    """The source's opt-out/objection flags (``Provenance.opt_outs``). Metadata, never a CLD column. An
    unrecognised token counts as an opt-out (``cld_governance.sharing``: fail closed for optional exports)."""
    return parse_opt_out_header(",".join(event.provenance.opt_outs))


def opt_out_flag(event: RecordValidated) -> bool:
    """True when the source flagged a national data opt-out or objection (reported; never excluded from the
    NHS England file, where the opt-out does not apply)."""
    return bool(opt_outs_of(event))


class RowFindings(NamedTuple):
    """The failures of one row of a submission file: (field, rule, validity, status, message, fix) each."""

    row: int
    event_reference: str | None
    findings: list[tuple[str, str, str, str, str, str]]
