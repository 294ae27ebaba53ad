"""The submission file, exactly as the specification lays it out, streamed to disk. Pure apart from the file.

- Columns: the spec's headers in spec order (``spec.file_fields``; 'LA Code' is not a column because the
  spec data marks its presence in the file as unknown: the LA is identified by the sender and file name).
- One row per in-scope record, EVERY in-scope record whatever its DQ findings: invalid values are sent as
  received and reported back (R-INV-1), never corrected or dropped. Records flagged by a source with a
  national data opt-out or objection are included too: the opt-out does not apply to this legally required
  flow (nhs-context.md, 'Law and policy').
- Dates: dd/mm/yyyy as carried on the validated topic (R-FLD-24). 'Reporting Period Start Date' and
  'Reporting Period End Date' are set on every row to the submission's stated period (the file states one
  period; a source's own values could disagree row by row).
- Encoding: UTF-8 without a byte-order mark; RFC 4180 CSV (comma, double-quote quoting where needed) with
  CRLF line endings, as spreadsheet tools and most collection portals expect.
- Formula injection (OWASP 'CSV injection'): a value starting with = + - @ tab or carriage return gets a
  leading apostrophe so that a spreadsheet shows it as text instead of running it. A plain negative number
  in a numeric field (Unit Cost, Planned units per week, No. of adults being cared for) is left alone: it is
  a legitimate value, and spreadsheets read it as a number, not a formula.
- The file is written from polars frames of the in-scope records (``frames.write_frames``); its SHA-256 is
  computed over the bytes as written (one pass, no read-back). Rows are ordered by record key, so the same
  content always gives the same bytes and the same hash (the basis of idempotent requests).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

from cld_schemas.spec import Spec, load_spec

LINE_TERMINATOR: Final = "\r\n"
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_NUMBER: Final = re.compile(r"-?\d+(\.\d+)?")
_NUMERIC_FORMATS: Final = frozenset({"decimal_2dp", "integer"})
_PERIOD_FIELDS: Final = ("reporting_period_start_date", "reporting_period_end_date")


def neutralise(value: str, *, numeric: bool) -> str:
    """Defuse a value a spreadsheet would run as a formula; leave plain negative numbers in numeric fields."""
    if value.startswith(_FORMULA_START):
        if numeric and _NUMBER.fullmatch(value):
            return value
        return "'" + value
    return value


def cld_date(d: date) -> str:
    return d.strftime("%d/%m/%Y")


@dataclass(frozen=True, slots=True)
class AssembledFile:
    path: Path
    sha256: str
    rows: int
    size_bytes: int
    opt_out_rows: int


def headers(spec: Spec | None = None) -> list[str]:
    return [f.header for f in (spec or load_spec()).file_fields]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()
