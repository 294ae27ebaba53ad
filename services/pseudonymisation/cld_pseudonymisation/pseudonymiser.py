"""Pseudonymise CLD records according to the policy, a frame (batch) at a time: the hot path.

``Pseudonymiser.pseudonymise_frame`` takes a polars frame of records (a single record is a one-row frame): the
generalisations are expressions (:mod:`cld_pseudonymisation.columnar`), each pseudonym's HMAC runs once per
distinct (scope, normalised value) of the frame, in Python, and is mapped back. The per-record code it replaced is
the test oracle :mod:`cld_pseudonymisation.reference`.

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

import polars as pl

from cld_pseudonymisation import columnar
from cld_pseudonymisation.generalise import PostcodeLookup, parse_date, postcode_parts
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


_MAPPING_SCHEMA_FRAME: Final = pl.DataFrame(schema={"la": pl.String, "v": pl.String, "p": pl.String})


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


def _normalised_identifier(value: str) -> tuple[str | None]:
    return (normalise_identifier(value),)


def _conversation_flag(text: str) -> tuple[str | None]:
    return ("Yes" if "conversation" in text.lower() else "No",)


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

    def hexdigests(self, values: Sequence[str]) -> list[str]:
        """The pseudonym of each normalised value (the per-distinct-value loop of a batch)."""
        inner_copy, outer_copy = self.inner_copy, self.outer_copy
        out: list[str] = []
        append = out.append
        for v in values:
            inner = inner_copy()
            inner.update(v.encode())
            outer = outer_copy()
            outer.update(inner.digest())
            append(outer.hexdigest()[:PSEUDONYM_HEX_CHARS])
        return out

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
        self._needed = frozenset(self._input_names | {"la_code", "reporting_period_end_date"})

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

    def pseudonymise_frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The frame as the policy allows it to leave: one String column per output field, in policy order.

        ``frame`` holds String columns named by the spec's field names (null = blank; a missing column is
        blank; other columns are not copied). Generalisations are expressions (:mod:`.columnar`); each
        pseudonym's HMAC runs once per distinct (scope, value) of the batch and is mapped back."""
        present = set(frame.columns)
        period_end = "reporting_period_end_date"
        lf = frame.lazy().select(
            (pl.col(n).cast(pl.String) if n in present else pl.lit(None, dtype=pl.String)).alias(n)
            for n in sorted(self._needed)
        )
        lf = columnar.with_dates(lf, sorted({*self._dob, *(src for src, _ in self._months), period_end}))
        for src in self._postcodes:
            lf = columnar.with_postcode(lf, src)
        helpers = [columnar.age_expr(src, period_end).alias("__age") for src in self._dob]
        for src, dst, namespace in self._pseudo:
            v = pl.col(src)
            norm = (
                columnar.normalised_nhs_number(v)
                if namespace is Namespace.NHS_NUMBER
                else columnar.normalised_identifier(v)
            )
            helpers.append(norm.alias("__norm_" + dst))
        text_sources = [src for src, _, ns in self._pseudo if ns is not Namespace.NHS_NUMBER]
        text_sources += [*self._postcodes, *(src for src, _ in self._flags)]
        if text_sources:
            helpers.append(
                pl.any_horizontal(pl.col(c).str.contains(columnar.NON_ASCII) for c in text_sources).alias("__odd")
            )
        f = lf.with_columns(helpers).collect()
        # Non-ASCII values (rare): their per-record functions, once per distinct value (columnar.with_odd).
        odd_rows = bool(text_sources) and bool(f["__odd"].any())

        def odd(
            src: str, fn: Callable[[str], tuple[str | None, ...]], width: int
        ) -> list[tuple[list[str], list[str | None]]]:
            return columnar.python_over_distinct(f[src], fn, width) if odd_rows else [([], [])] * width

        out: dict[str, pl.Expr | pl.Series] = {name: pl.col(name) for name in self._keep}
        for src, dst, namespace in self._pseudo:
            norm_col = "__norm_" + dst
            if namespace is not Namespace.NHS_NUMBER and odd_rows:
                fixed = columnar.with_odd(pl.col(norm_col), pl.col(src), odd(src, _normalised_identifier, 1)[0])
                f = f.with_columns(fixed.alias(norm_col))
            out[dst] = self._pseudonyms(f, norm_col, namespace).alias(dst)
        for src in self._dob:
            year, month, _ = (pl.col(n) for n in columnar.date_parts(src))
            out["birth_year"], out["birth_month"] = year.cast(pl.String), month.cast(pl.String)
            out["age_band_period_end"] = columnar.age_band_expr(pl.col("__age"))
        for src, dst in self._months:
            out[dst] = columnar.year_month(src)
        for src in self._postcodes:
            v = pl.col(src)
            sector, district, full = (
                columnar.with_odd(e, v, o)
                for e, o in zip(columnar.postcode_outputs(), odd(src, postcode_parts, 3), strict=True)
            )
            out["postcode_sector"], out["postcode_district"] = sector, district
            if self.lookup is None:
                out["lsoa"] = out["msoa"] = pl.lit(None, dtype=pl.String)
            else:
                out["lsoa"], out["msoa"] = self._areas(f.select(full).to_series())
        for src, dst in self._flags:
            v = pl.col(src)
            out[dst] = columnar.with_odd(columnar.conversation_flag(v), v, odd(src, _conversation_flag, 1)[0])
        return f.select(out[n].alias(n) for n in self.output_fields)

    def _pseudonyms(self, f: pl.DataFrame, norm_col: str, namespace: Namespace) -> pl.Series:
        """The pseudonyms of one normalised column: HMAC once per distinct (scope, value), mapped back."""
        norm = f[norm_col]
        la = f["la_code"]
        if namespace is Namespace.NHS_NUMBER or la.n_unique() == 1:
            h = self._nhs_hmac if namespace is Namespace.NHS_NUMBER else self._scoped_hmac(namespace, la[0])
            distinct = norm.filter(norm != "").unique().to_list()
            return norm.replace_strict(distinct, h.hexdigests(distinct), default=None, return_dtype=pl.String)
        pairs = pl.DataFrame({"la": la, "v": norm})
        parts = [_MAPPING_SCHEMA_FRAME]
        for (la_code,), group in pairs.filter(pl.col("v") != "").unique().group_by("la"):
            h = self._scoped_hmac(namespace, cast(str | None, la_code))
            parts.append(group.with_columns(p=pl.Series(h.hexdigests(group["v"].to_list()), dtype=pl.String)))
        mapping = pl.concat(parts)
        return pairs.join(mapping, on=["la", "v"], how="left", nulls_equal=True, maintain_order="left")["p"]

    def _areas(self, full: pl.Series) -> tuple[pl.Series, pl.Series]:
        """(lsoa, msoa) of each normalised full postcode: one dictionary look-up per distinct postcode."""
        if self.lookup is None:
            empty = pl.Series([None] * full.len(), dtype=pl.String)
            return empty, empty
        distinct = full.drop_nulls().unique().to_list()
        found = [self.lookup.areas(pc) or (None, None) for pc in distinct]
        return (
            full.replace_strict(distinct, [a[0] for a in found], default=None, return_dtype=pl.String),
            full.replace_strict(distinct, [a[1] for a in found], default=None, return_dtype=pl.String),
        )

    def records_frame(self, records: Sequence[Record]) -> pl.DataFrame:
        """Records (mappings of field name to text or None) as the frame ``pseudonymise_frame`` reads."""
        schema = dict.fromkeys(sorted(self._needed), pl.String)
        return pl.from_dicts(records, schema=schema) if records else pl.DataFrame(schema=schema)

    def pseudonymise(self, record: Record) -> PseudoRecord:
        """One record as the policy allows it to leave: a one-row :meth:`pseudonymise_frame`."""
        return self.pseudonymise_frame(self.records_frame([record])).row(0, named=True)

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
