"""How to fix a failed field, in the analyst's words. Pure functions, no I/O.

A fix may quote the row's value only when the value is not personal: code values of non-personal coded fields
('female' -> 'Female'), event and reporting-period dates, costs and counts, LA/ODS/CQC codes. It never quotes
an NHS number, name, date of birth or death, postcode, person identifier or free text: for those it describes
the shape of the problem instead. Where no fix can be known it says so (``NO_AUTOMATIC_FIX``).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from datetime import date
from typing import Final

from cld_schemas.spec import SpecField, StatusCase

NO_AUTOMATIC_FIX: Final = "No automatic fix known: check the value against the source record."

# Values of these formats are never quoted in a fix, whatever the field's PII flag says.
_NEVER_QUOTED_FORMATS: Final = frozenset({"nhs_number", "postcode", "text", "identifier", "unknown"})
_PERSONAL_DATES: Final = frozenset({"date_of_birth", "date_of_death"})
_ISO_RE: Final = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?", re.ASCII)
_DMY_LOOSE_RE: Final = re.compile(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})", re.ASCII)
_DMY_TIME_RE: Final = re.compile(r"(\d{2}/\d{2}/\d{4})[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?", re.ASCII)
_DIGITS_SEPARATED_RE: Final = re.compile(r"[\d\s\-]+", re.ASCII)
_THOUSANDS_RE: Final = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?", re.ASCII)
_MAX_QUOTE: Final = 60


def quotable(f: SpecField) -> bool:
    """May a fix for this field quote the row's value? Only for non-personal, non-free-text fields."""
    return not f.pii and f.format not in _NEVER_QUOTED_FORMATS and f.name not in _PERSONAL_DATES


def _q(value: str) -> str:
    v = value if len(value) <= _MAX_QUOTE else value[: _MAX_QUOTE - 3] + "..."
    return "'" + v.replace("'", "’") + "'"


def date_fix(f: SpecField, value: str, rule: str) -> str:
    """CLD010 (not dd/mm/yyyy) and CLD011 (not a real date)."""
    show = quotable(f)
    v = value.strip()
    iso = _ISO_RE.fullmatch(v)
    if rule == "CLD010" and iso:
        y, m, d = int(iso[1]), int(iso[2]), int(iso[3])
        if _real(y, m, d):
            if show:
                return f"Write {d:02d}/{m:02d}/{y:04d} (dd/mm/yyyy), not {_q(value)}."
            return "Write the date as dd/mm/yyyy: it is written year-first (yyyy-mm-dd); swap it round."
    timed = _DMY_TIME_RE.fullmatch(v)
    if rule == "CLD010" and timed:
        if show:
            return f"Remove the time: write {_q(timed[1])} (dd/mm/yyyy), not {_q(value)}."
        return "Remove the time after the date: write dd/mm/yyyy only (in Excel, format the column as 'dd/mm/yyyy')."
    loose = _DMY_LOOSE_RE.fullmatch(v)
    if rule == "CLD010" and loose:
        d, m, yy = int(loose[1]), int(loose[2]), loose[3]
        year = int(yy) if len(yy) == 4 else None
        if year is not None and _real(year, m, d):
            if show:
                return f"Write {d:02d}/{m:02d}/{year:04d} (dd/mm/yyyy, two-digit day and month), not {_q(value)}."
            return "Write the date as dd/mm/yyyy with a two-digit day and month and '/' between them."
        if year is None:
            return "Write the year with four digits (dd/mm/yyyy): in Excel, format the column as 'dd/mm/yyyy'."
    if rule == "CLD011":
        loose = _DMY_LOOSE_RE.fullmatch(v)
        if loose and _real(int(loose[3]), int(loose[1]), int(loose[2])):
            return "The day and month look swapped (mm/dd/yyyy): write the day first, dd/mm/yyyy."
        return "The day or month does not exist (for example 31/02 or month 13): correct it from the source record."
    if v.isdigit() and 4 <= len(v) <= 6:
        return (
            "Excel saved the date as a serial number: format the column as 'dd/mm/yyyy' before saving as CSV, "
            "then write dd/mm/yyyy."
        )
    return "Write the date as dd/mm/yyyy (for example 01/10/2025)."


def _real(y: int, m: int, d: int) -> bool:
    try:
        date(y, m, d)
    except ValueError:
        return False
    return 1900 <= y <= 2100


def nhs_fix(value: str, rule: str) -> str:
    if rule == "CLD021":
        return (
            "The check digit does not match, so a digit is mistyped: look the number up on the person's record "
            "(or PDS); no automatic fix known."
        )
    v = value.strip()
    if _DIGITS_SEPARATED_RE.fullmatch(v) and sum(c.isdigit() for c in v) == 10:
        return "Remove the spaces or dashes: write the 10 digits only."
    if v.replace(".", "").isdigit() and ("E" in value.upper() or "." in value):
        return "Excel turned the number into a decimal/scientific number: format the column as Text, 10 digits."
    n = sum(c.isdigit() for c in v)
    if v.isdigit():
        return f"It has {n} digits, not 10: check for a lost leading digit or an extra one in the source record."
    return "Write the 10-digit NHS number only (no letters or other characters), or leave it blank if not known."


def postcode_fix(value: str) -> str:
    v = value.strip()
    compact = "".join(v.split()).upper()
    if 5 <= len(compact) <= 7 and compact.isalnum() and compact != v:
        return "Write the postcode in capitals with one space before the last three characters (e.g. LS1 4AP)."
    return "Write the full UK postcode (e.g. LS1 4AP), or leave it blank if not known; partial postcodes fail."


def number_fix(f: SpecField, value: str, rule: str) -> str:
    v = value.strip()
    show = quotable(f)
    if v.startswith("£"):
        return f"Remove the '£' sign: {_q(v[1:])}." if show else "Remove the '£' sign: write the number only."
    if _THOUSANDS_RE.fullmatch(v):
        plain = v.replace(",", "")
        return f"Remove the thousands separators: {_q(plain)}." if show else "Remove the thousands separators."
    if rule == "CLD040":
        try:
            x = float(v)
        except ValueError:
            return f"Write a number with up to two decimal places (e.g. 123.45) in {f.header}."
        if show:
            return f"Round to two decimal places: {_q(f'{x:.2f}')} instead of {_q(value)}."
        return "Round to two decimal places."
    if rule == "CLD041":
        try:
            x = float(v)
        except ValueError:
            return f"Write a whole number (0, 1, 2, ...) in {f.header}."
        if math.isfinite(x) and x >= 0 and x == int(x) and show:  # 'INF' reads as a float, with no int
            return f"Write {int(x)} (a whole number, no decimal point), not {_q(value)}."
        return f"Write a whole number of 0 or more in {f.header}."
    return NO_AUTOMATIC_FIX


def la_code_fix(value: str) -> str:
    v = value.strip()
    if v.isdigit() and len(v) < 3:
        return f"Pad with leading zeros to three digits: {_q(v.zfill(3))} (format the column as Text in Excel)."
    return "Write the LA's 3-digit code (e.g. '318'); `cld tenants` lists the known codes."


def ods_fix(value: str) -> str:
    v = value.strip()
    if v.upper() != v and len(v) == 6:
        return f"Write the letter in capitals: {_q(v.upper())}."
    return "Write the GP practice's ODS code: one capital letter and five digits (e.g. A12345)."


def cqc_fix(value: str) -> str:
    v = value.strip()
    if v.isdigit():
        return f"Add the '1-' prefix: {_q('1-' + v)}."
    return "Write the CQC location ID as '1-' followed by digits (e.g. 1-123456789), from the CQC register."


def code_fix(
    f: SpecField,
    value: str,
    rule: str,
    *,
    release_label: str,
    release_id: str = "r2",
    defined: Iterable[str],
    folded_match: str | None = None,
    other_release_label: str | None = None,
    same_meaning: str | None = None,
) -> str:
    """CLD002 (not in the list), CLD003 (a Release 1 value), CLD004 (capitalisation or spacing)."""
    show = quotable(f)
    values = list(defined)
    if rule == "CLD004" and folded_match is not None:
        return f"{_q(value)} -> {_q(folded_match)}" if show else f"Write it exactly as {_q(folded_match)}."
    if rule == "CLD003":
        if same_meaning is not None:
            old = _q(value) if show else "this value"
            return f"{other_release_label or 'Release 1'} label {old} is {_q(same_meaning)} in {release_label}."
        return (
            f"This {other_release_label or 'Release 1'} value has no single {release_label} equivalent: choose the "
            f"{release_label} value by hand, or validate with --release r1 if the whole file is a Release 1 file."
        )
    if show:
        # The value is not a spec value, so it may be anything an LA typed (even free text): never quote it.
        close = difflib.get_close_matches(value, values, n=1, cutoff=0.75)
        if close:
            return f"Did you mean {_q(close[0])}? (the closest {release_label} value)"
    if 0 < len(values) <= 8:
        return "Use one of: " + ", ".join(_q(v) for v in values) + "."
    if values:
        return (
            f"Use a {release_label} value of {f.header}: `cld spec codelists --release {release_id}` lists all "
            f"{len(values)}."
        )
    return NO_AUTOMATIC_FIX


def blank_mandatory_fix(f: SpecField, case: StatusCase, *, event_type: str | None = None) -> str:
    """A blank Mandatory field: what makes it required, and what to do. ``event_type``: the row's event type
    when it is a defined code value (not personal data)."""
    if f.name == "event_end_date":
        if case.id == "S-EVENT-END-DECEASED":
            return "Event End Date is required when a Date of Death is given: add the date the event ended."
        what = f"a {event_type}" if event_type else "this event"
        return f"Event End Date is required for {what}: add it, or leave the event out until it ends."
    if f.name in ("nhs_number",):
        return "Add the NHS Number from the person's record (PDS); it is Mandatory here."
    if case.why.startswith("Mandatory"):
        return f"Fill in {f.header}: {case.why[0].lower()}{case.why[1:]}."
    return f"Fill in {f.header}: it is Mandatory here ({case.why})."


CROSS_FIELD_FIXES: Final[dict[str, str]] = {
    "XF001": "Check both dates: the end date must be on or after the start date (swap them if entered the wrong way).",
    "XF002": "Check Date of Birth and Date of Death against the person's record: death cannot precede birth.",
    "XF003": "Check the reporting period: the end date must be after the start date (e.g. 01/04/2025 - 31/03/2026).",
    "XF004": "Leave this event out of this period's file, or correct its dates if they are mistyped.",
    "XF005": "Clear this carer field, or change Client Type if the person is in fact a carer.",
    "XF006": "Clear this event field: 'Carer known by association' rows carry no event details.",
    "XF007": "Check Event Start Date and Date of Death: an event cannot start after the person died.",
}


def cross_field_fix(rule: str) -> str:
    return CROSS_FIELD_FIXES.get(rule, NO_AUTOMATIC_FIX)


def too_long_fix(f: SpecField, limit: int) -> str:
    return f"Shorten {f.header} to at most {limit} characters (check that cells have not run together)."
