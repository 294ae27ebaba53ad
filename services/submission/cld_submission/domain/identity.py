"""Record identity, kind and dates: the facts the submission state needs from one CLD record. Pure.

Keys are keyed hashes (HMAC-SHA256 with a per-deployment secret) of identifying values, so that record
keys, person keys and event keys can appear in reports, logs and the API without being personal data: an
unkeyed hash of an LA code plus a 10-digit NHS number could be reversed by trying every number.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import cache
from typing import Final

from cld_schemas.contract import parse_date as contract_date
from cld_schemas.spec import load_spec

_SEP: Final = "\x1f"
KEY_HEX_CHARS: Final = 32
"""128 bits of the HMAC: collisions are negligible at any CLD volume."""

Record = Mapping[str, str | None]


class Kind(StrEnum):
    """How the scope rules treat a record (R-SCOPE-1..3, R-FIL-1..2)."""

    EVENT = "event"
    """A request, assessment or review: in scope when completed in the period."""
    SERVICE = "service"
    """A service: in scope when active at any time in the period (may be open)."""
    CARER_BY_ASSOCIATION = "carer_by_association"
    """A 'Carer known by association' row: person details only, no event (R-SCOPE-10)."""
    UNDETERMINED = "undetermined"
    """Event type or a scope date unreadable: kept in scope so that no row is silently dropped."""


@cache
def _meanings(field_name: str) -> dict[str, str]:
    """Case- and space-folded code value -> release-independent key, over every release's list."""
    f = load_spec().field(field_name)
    out: dict[str, str] = {}
    for cl in (f.code_lists or {}).values():
        for v in cl.values:
            out.setdefault(_fold(v.value), v.key)
    return out


def _fold(value: str) -> str:
    return " ".join(value.casefold().split())


def code_key(field_name: str, value: str | None) -> str | None:
    """The meaning (spec ``key``) of a coded value in any release, tolerant of case; None when unknown."""
    if not value:
        return None
    return _meanings(field_name).get(_fold(value))


def parse_date(value: str | None) -> date | None:
    """A CLD date (dd/mm/yyyy, R-FLD-24); ISO yyyy-mm-dd is read too, for scope only (the one date parser of
    the record path, ``cld_schemas.contract.parse_date``). None when blank; raises ValueError for a value that is
    not a date."""
    if value is None or not value.strip():
        return None
    day = contract_date(value)
    if day is None:
        raise ValueError("not a date")
    return day


class KeyHasher:
    """Keyed hashes of identifying values. The same secret gives the same keys across restarts/rebuilds."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the record-key secret must be at least 16 bytes")
        self._secret = secret

    def __call__(self, *parts: str) -> str:
        msg = _SEP.join(parts).encode("utf-8")
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:KEY_HEX_CHARS]


class ProcessKeyHasher(KeyHasher):
    """Keys that live only inside one process (a random secret per run): keyed BLAKE2b, cheaper than HMAC."""

    def __init__(self) -> None:
        super().__init__(secrets.token_bytes(32))
        self._key = secrets.token_bytes(32)

    def __call__(self, *parts: str) -> str:
        msg = _SEP.join(parts).encode("utf-8")
        return hashlib.blake2b(msg, key=self._key, digest_size=KEY_HEX_CHARS // 2).hexdigest()


def _v(record: Record, name: str) -> str:
    value = record.get(name)
    return value.strip() if value else ""


@dataclass(frozen=True, slots=True)
class Identity:
    """Everything the state store indexes about one record. No field holds personal data."""

    record_key: str
    kind: Kind
    event_type: str | None
    client_type: str | None
    person_key: str | None
    linked_person_keys: tuple[str, ...]
    start: date | None
    derived_end: date | None
    """Event end date, or the date of death when that falls first (R-FIL-3)."""
    death: date | None
    content_hash: str


def person_key(hasher: KeyHasher, la_code: str, record: Record) -> str | None:
    """R-ID-1: the LA person id within the LA, else the NHS number; None when neither is given."""
    la_id = _v(record, "la_person_unique_identifier")
    if la_id:
        return hasher(la_code, "id", la_id)
    nhs = _v(record, "nhs_number").replace(" ", "")
    if nhs:
        return hasher(la_code, "nhs", nhs)
    return None


def canonical_json(record: Record) -> str:
    """The record as compact JSON with sorted keys, blanks left out: stored as is, and hashed for diffs."""
    return json.dumps(
        {k: v for k, v in record.items() if v is not None}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def content_hash(record: Record, canonical: str | None = None) -> str:
    """SHA-256 of the canonical JSON: equal hashes mean an unchanged record (quarter-to-quarter diffs)."""
    return hashlib.sha256((canonical if canonical is not None else canonical_json(record)).encode()).hexdigest()


def identify(
    hasher: KeyHasher, la_code: str, record: Record, *, canonical: str | None = None, with_content_hash: bool = True
) -> Identity:
    """Key, kind and scope dates of ``record``. ``with_content_hash`` False: ``content_hash`` is '' (for checks
    that never compare versions, such as ``cld validate``'s, it is most of the cost).

    ``record_key``:
    - 'Carer known by association' rows: LA + person id + client type + linked ids (no event to key on);
    - rows with an Event Reference (R-FLD-23: unique per event, identical on resubmission): LA + person id
      + event type + Event Reference. The person and type are part of the key so that a reference an LA
      reuses for a different person's or type's event stays two records (and is reported by the dataset
      check), rather than one silently replacing the other;
    - otherwise NHS England's bespoke event key (R-DUP-4): LA + person id + event type + event start date
      + client type + the type's own fields (request: route of access; assessment: assessment type;
      service: service type, component and delivery mechanism; review: review reason).
    """
    client_type = code_key("client_type", record.get("client_type"))
    event_type = code_key("event_type", record.get("event_type"))
    person = person_key(hasher, la_code, record)
    person_part = person or "no-person"
    linked = tuple(
        hasher(la_code, "id", _v(record, n))
        for n in ("adult_1_linked_person_id", "adult_2_linked_person_id", "adult_3_linked_person_id")
        if _v(record, n)
    )
    undetermined = False
    try:
        start = parse_date(record.get("event_start_date"))
    except ValueError:
        start, undetermined = None, True
    try:
        end = parse_date(record.get("event_end_date"))
    except ValueError:
        end, undetermined = None, True
    try:
        death = parse_date(record.get("date_of_death"))
    except ValueError:
        death = None  # an unreadable date of death does not decide scope; record-level DQ reports it

    if client_type == "carer_known_by_association":
        kind = Kind.CARER_BY_ASSOCIATION
        key = hasher(la_code, "ckba", person_part, client_type, *sorted(linked))
    else:
        if event_type == "service":
            kind = Kind.SERVICE
        elif event_type in ("request", "assessment", "review"):
            kind = Kind.EVENT
        else:
            kind = Kind.UNDETERMINED
        if undetermined:
            kind = Kind.UNDETERMINED
        ref = _v(record, "event_reference")
        type_part = event_type or _fold(_v(record, "event_type"))
        if ref:
            key = hasher(la_code, "ref", person_part, type_part, ref)
        else:
            extra: tuple[str, ...]
            if event_type == "request":
                extra = (_v(record, "request_route_of_access"),)
            elif event_type == "assessment":
                extra = (_v(record, "assessment_type"),)
            elif event_type == "service":
                extra = (
                    _v(record, "service_type"),
                    _v(record, "service_component"),
                    _v(record, "delivery_mechanism"),
                )
            elif event_type == "review":
                extra = (_v(record, "review_reason"),)
            else:
                extra = ()
            key = hasher(
                la_code,
                "evt",
                person_part,
                type_part,
                _v(record, "event_start_date"),
                client_type or _fold(_v(record, "client_type")),
                *extra,
            )

    derived_end = end
    if death is not None and (start is None or death >= start) and (end is None or death < end):
        derived_end = death  # R-FIL-3: death between start and end (or after start, open) ends the event
    return Identity(
        record_key=key,
        kind=kind,
        event_type=event_type,
        client_type=client_type,
        person_key=person,
        linked_person_keys=linked,
        start=start,
        derived_end=derived_end,
        death=death,
        content_hash=content_hash(record, canonical) if with_content_hash else "",
    )
