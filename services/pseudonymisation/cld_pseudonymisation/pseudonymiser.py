"""Pseudonymise one CLD record according to the policy: the hot path (about 10 us a row).

Keyed pseudonyms are HMAC-SHA256 (RFC 2104) over a domain-separated message::

    b"cld-pseudonym/v1" + lp(tenant) + lp(purpose) + lp(namespace) + lp(scope) + normalised_value

where ``lp(x) = str(len(x_utf8)).encode() + b":" + x_utf8`` (so no two component lists give one message),
``scope`` is the record's LA code (stripped, upper case; the tenant when the record has none) for identifiers
an LA issues (LA person id, linked person ids, event reference) and empty for the NHS number. The pseudonym
is the first 40 hex digits (160 bits) of the HMAC, lower case.

Normalisation before hashing: NHS number -> its ASCII digits only ('999 000 0018' == '9990000018');
other identifiers -> whitespace runs collapsed to one space, stripped, upper case. A value that normalises
to nothing gives no pseudonym (None).

For speed, the HMAC inner and outer SHA-256 states are keyed once (and the inner one fed the message prefix),
then copied per call: identical output to ``hmac.new(key, message, sha256)`` at a third of its cost.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Final, cast

from cld_pseudonymisation.generalise import (
    UNKNOWN_AGE_BAND,
    PostcodeLookup,
    age_at,
    age_band,
    parse_date,
    postcode_parts,
)
from cld_pseudonymisation.keys import PseudonymKey
from cld_pseudonymisation.policy import Action, Method, Namespace, Policy

PSEUDONYM_HEX_CHARS: Final = 40
"""Pseudonym length: 40 hex digits = 160 bits of the HMAC-SHA256."""
MESSAGE_VERSION: Final = b"cld-pseudonym/v1"
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NON_DIGITS = re.compile(r"[^0-9]")
_SCOPE_CACHE_MAX = 4096

Record = Mapping[str, str | None]
PseudoRecord = dict[str, str | None]


class PseudonymiserError(ValueError):
    """Bad configuration (tenant, purpose, QI names). Messages carry no personal data."""


_digits = functools.partial(_NON_DIGITS.sub, "")


def normalise_nhs_number(value: str) -> str:
    """ASCII digits only."""
    if len(value) == 10 and value.isascii() and value.isdigit():
        return value
    return _digits(value)


def normalise_identifier(value: str) -> str:
    """Whitespace runs collapsed to one space, stripped, upper case."""
    return " ".join(value.split()).upper()


def _lp(text: str) -> bytes:
    b = text.encode("utf-8")
    return str(len(b)).encode("ascii") + b":" + b


def hmac_message(tenant: str, purpose: str, namespace: Namespace, scope: str, normalised: str) -> bytes:
    """The exact HMAC message (documented above; tests check pseudonyms against stdlib ``hmac``)."""
    return MESSAGE_VERSION + _lp(tenant) + _lp(purpose) + _lp(namespace.value) + _lp(scope) + normalised.encode("utf-8")


class _KeyedHmac:
    """HMAC-SHA256 with the key (and a message prefix) absorbed once; ``digest_hex`` per value."""

    __slots__ = ("_inner", "_outer", "inner_copy", "outer_copy")

    def __init__(self, key: bytes, prefix: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._inner.update(prefix)
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self.inner_copy = self._inner.copy
        self.outer_copy = self._outer.copy

    def __repr__(self) -> str:
        return "_KeyedHmac(<hidden>)"

    def hexdigest(self, value: bytes) -> str:
        inner = self._inner.copy()
        inner.update(value)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:PSEUDONYM_HEX_CHARS]


class Pseudonymiser:
    """Apply a :class:`Policy` to records for one tenant and one purpose (recipient).

    ``tenant`` is the LA code or hub id running the pipeline; ``purpose`` names the recipient or use
    (e.g. 'nhse', 'dhsc', 'preview'). Both are 1-64 of ``A-Z a-z 0-9 _ . -``. Pseudonyms differ per key,
    tenant and purpose and are stable for the same four inputs, across runs and processes.
    Instances are immutable after construction apart from an internal cache; they never expose the key.
    """

    def __init__(
        self,
        policy: Policy,
        key: PseudonymKey,
        *,
        tenant: str,
        purpose: str,
        lookup: PostcodeLookup | None = None,
    ) -> None:
        for label, value in (("tenant", tenant), ("purpose", purpose)):
            if not _LABEL.fullmatch(value):
                raise PseudonymiserError(f"{label} must be 1 to 64 letters, digits, '_', '.' or '-'")
        self.policy = policy
        self.key_id = key.key_id
        self.tenant = tenant
        self.purpose = purpose
        self.lookup = lookup
        self._key = key
        self._scoped: dict[tuple[Namespace, str], _KeyedHmac] = {}
        self._by_la_code: dict[tuple[Namespace, str | None], _KeyedHmac] = {}
        self._nhs_hmac = self._hmac_for(Namespace.NHS_NUMBER, "")
        self.output_fields: tuple[str, ...] = policy.output_fields

        keep: list[str] = []
        pseudo: list[tuple[str, str, Namespace]] = []
        dob: list[str] = []
        months: list[tuple[str, str]] = []
        postcodes: list[str] = []
        flags: list[tuple[str, str]] = []
        for f in policy.fields:
            if f.action is Action.KEEP:
                keep.append(f.name)
            elif f.action is Action.PSEUDONYMISE:
                assert f.namespace is not None
                pseudo.append((f.name, f.outputs[0], f.namespace))
            elif f.action is Action.GENERALISE:
                if f.method is Method.BIRTH_YEAR_MONTH_AGE_BAND:
                    dob.append(f.name)
                elif f.method is Method.MONTH:
                    months.append((f.name, f.outputs[0]))
                elif f.method is Method.POSTCODE_GEOGRAPHY:
                    postcodes.append(f.name)
                else:
                    flags.append((f.name, f.outputs[0]))
        self._keep = tuple(keep)
        self._input_names = frozenset(f.name for f in policy.fields)
        self._not_kept = tuple(f.name for f in policy.fields if f.action is not Action.KEEP)
        self._pseudo = tuple(pseudo)
        self._dob = tuple(dob)
        self._months = tuple(months)
        self._postcodes = tuple(postcodes)
        self._flags = tuple(flags)
        self._period_end_cache: tuple[str | None, tuple[int, int, int] | None] = (None, None)

    def __repr__(self) -> str:
        return f"Pseudonymiser(tenant={self.tenant!r}, purpose={self.purpose!r}, key_id={self.key_id!r})"

    def __reduce__(self) -> Any:
        raise TypeError("a Pseudonymiser holds a key and cannot be pickled")

    # -- pseudonyms ---------------------------------------------------------------------------------------

    def _hmac_for(self, namespace: Namespace, scope: str) -> _KeyedHmac:
        h = self._scoped.get((namespace, scope))
        if h is None:
            if len(self._scoped) >= _SCOPE_CACHE_MAX:
                self._scoped.clear()
            prefix = hmac_message(self.tenant, self.purpose, namespace, scope, "")
            h = self._scoped[(namespace, scope)] = _KeyedHmac(self._key.secret_bytes(), prefix)
        return h

    def _scoped_hmac(self, namespace: Namespace, la_code: str | None) -> _KeyedHmac:
        """The HMAC for an LA-scoped namespace: scope is the record's LA code, else the tenant."""
        h = self._by_la_code.get((namespace, la_code))
        if h is None:
            if len(self._by_la_code) >= _SCOPE_CACHE_MAX:
                self._by_la_code.clear()
            scope = normalise_identifier(la_code) if la_code else self.tenant
            h = self._by_la_code[(namespace, la_code)] = self._hmac_for(namespace, scope or self.tenant)
        return h

    def pseudonym(self, namespace: Namespace, value: str | None, *, la_code: str | None = None) -> str | None:
        """The pseudonym of one identifier (None when blank after normalisation). Same as in ``pseudonymise``."""
        if value is None:
            return None
        if namespace is Namespace.NHS_NUMBER:
            norm = normalise_nhs_number(value)
            h = self._nhs_hmac
        else:
            norm = normalise_identifier(value)
            h = self._scoped_hmac(namespace, la_code)
        return h.hexdigest(norm.encode("utf-8")) if norm else None

    # -- records ------------------------------------------------------------------------------------------

    def _period_end(self, value: str | None) -> tuple[int, int, int] | None:
        cached_value, parsed = self._period_end_cache
        if value != cached_value:
            parsed = parse_date(value)
            self._period_end_cache = (value, parsed)
        return parsed

    def pseudonymise(self, record: Record) -> PseudoRecord:
        """The record as the policy allows it to leave. Input fields not in the policy are not copied."""
        get = record.get
        if type(record) is dict and record.keys() == self._input_names:
            # Fast path (a record with exactly the spec's fields): copy, then remove what may not leave.
            out: PseudoRecord = record.copy()
            for name in self._not_kept:
                del out[name]
        else:
            out = {name: get(name) for name in self._keep}
        la_code = get("la_code")
        for src, dst, namespace in self._pseudo:
            value = get(src)
            if value is None:
                out[dst] = None
                continue
            if namespace is Namespace.NHS_NUMBER:
                norm = value if (len(value) == 10 and value.isascii() and value.isdigit()) else _digits(value)
                h = self._nhs_hmac
            else:
                norm = " ".join(value.split()).upper()
                h = self._by_la_code.get((namespace, la_code)) or self._scoped_hmac(namespace, la_code)
            if not norm:
                out[dst] = None
                continue
            # HMAC inlined (see _KeyedHmac.hexdigest): this loop is the hot path.
            inner = h.inner_copy()
            inner.update(norm.encode())
            outer = h.outer_copy()
            outer.update(inner.digest())
            out[dst] = outer.hexdigest()[:PSEUDONYM_HEX_CHARS]
        for src in self._dob:
            birth = parse_date(get(src))
            if birth is None:
                out["birth_year"] = out["birth_month"] = None
                out["age_band_period_end"] = UNKNOWN_AGE_BAND
            else:
                out["birth_year"] = str(birth[0])
                out["birth_month"] = str(birth[1])
                end = self._period_end(get("reporting_period_end_date"))
                out["age_band_period_end"] = age_band(age_at(birth, end)) if end else UNKNOWN_AGE_BAND
        for src, dst in self._months:
            d = parse_date(get(src))
            out[dst] = f"{d[0]:04d}-{d[1]:02d}" if d else None
        for src in self._postcodes:
            sector, district, full = postcode_parts(get(src))
            out["postcode_sector"] = sector
            out["postcode_district"] = district
            areas = self.lookup.areas(full) if self.lookup is not None and full else None
            out["lsoa"], out["msoa"] = areas if areas is not None else (None, None)
        for src, dst in self._flags:
            text = get(src)
            out[dst] = None if text is None else ("Yes" if "conversation" in text.lower() else "No")
        return out

    # -- helpers for risk ---------------------------------------------------------------------------------

    def check_qi_names(self, qi_names: Sequence[str]) -> tuple[str, ...]:
        """Validate quasi-identifier names against the output fields (pseudonyms are not QIs)."""
        names = tuple(qi_names)
        if not names:
            raise PseudonymiserError("at least one quasi-identifier is needed")
        bad = [n for n in names if n not in self.output_fields or n.endswith("_pseudo")]
        if bad:
            raise PseudonymiserError(
                f"not a quasi-identifier of the pseudonymised data: {', '.join(bad)} "
                f"(choose from: {', '.join(n for n in self.output_fields if not n.endswith('_pseudo'))})"
            )
        if len(set(names)) != len(names):
            raise PseudonymiserError("a quasi-identifier is named twice")
        return names


def qi_tuple(pseudonymised: Mapping[str, str | None], qi_names: Sequence[str]) -> tuple[str | None, ...]:
    """The values of the quasi-identifiers, in ``qi_names`` order (a blank is a value of its own)."""
    return tuple(pseudonymised.get(n) for n in qi_names)


def qi_getter(qi_names: Sequence[str]) -> Callable[[Mapping[str, str | None]], tuple[str | None, ...]]:
    """A faster ``qi_tuple`` for records made by ``Pseudonymiser.pseudonymise`` (every output field present)."""
    names = tuple(qi_names)
    if len(names) == 1:
        only = names[0]
        return lambda rec: (rec[only],)
    return cast(Callable[[Mapping[str, str | None]], tuple[str | None, ...]], itemgetter(*names))


def person_key(pseudonymised: Mapping[str, str | None]) -> str | None:
    """The person a pseudonymised row belongs to: pseudonymised LA person id, else pseudonymised NHS number.

    The LA person id comes first: it is on every row (NHS England found it 100% populated) and stable within
    the LA, while an NHS number may be missing on some of a person's rows. Both are already LA-scoped or
    national, so keys from different LAs of a hub never collide.
    """
    la_id = pseudonymised.get("la_person_unique_identifier_pseudo")
    if la_id:
        return "la:" + la_id
    nhs = pseudonymised.get("nhs_number_pseudo")
    return "nhs:" + nhs if nhs else None


def row_order(pseudonymised: Mapping[str, str | None]) -> int:
    """Sort key for 'the person's latest row': event start date as yyyymmdd (0 when unknown)."""
    v = pseudonymised.get("event_start_date")
    if v is not None and len(v) == 10 and v[2] == "/" and v[5] == "/":
        digits = v[6:] + v[3:5] + v[:2]  # dd/mm/yyyy -> yyyymmdd: the common case, without full parsing
        if digits.isascii() and digits.isdigit():
            return int(digits)
    d = parse_date(v)
    return d[0] * 10000 + d[1] * 100 + d[2] if d else 0
