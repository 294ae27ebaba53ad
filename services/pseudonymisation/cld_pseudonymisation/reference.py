"""The reference oracle: today's per-record pseudonymisation, kept only for the differential tests.

Issue 11 item 2 moved pseudonymisation onto frames (``Pseudonymiser.pseudonymise_frame``). This module keeps the
per-record code it replaced, unchanged, so tests can check the columnar engine against it value for value
(tests/unit/test_pseudonymisation_columnar.py). Production code never imports it (an import-linter contract
says so); it is not on any hot path.
"""

from __future__ import annotations

from cld_pseudonymisation.generalise import UNKNOWN_AGE_BAND, age_at, age_band, parse_date, postcode_parts
from cld_pseudonymisation.policy import Namespace
from cld_pseudonymisation.pseudonymiser import (
    PSEUDONYM_HEX_CHARS,
    Pseudonymiser,
    PseudoRecord,
    Record,
    _digits,
)


class ReferencePseudonymiser(Pseudonymiser):
    """A :class:`Pseudonymiser` whose ``pseudonymise`` is the per-record code of before issue 11."""

    _period_end_cache: tuple[str | None, tuple[int, int, int] | None] = (None, None)

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
