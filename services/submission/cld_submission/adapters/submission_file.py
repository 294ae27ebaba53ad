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
- The file's SHA-256 is computed over the bytes as written. Rows are ordered by record key, so the same
  content always gives the same bytes and the same hash (the basis of idempotent requests).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

from cld_runtime.files import private_dir
from cld_schemas.spec import Spec, SpecField, load_spec

from ..domain.records import StoredRecord

LINE_TERMINATOR: Final = "\r\n"
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_NUMBER: Final = re.compile(r"-?\d+(\.\d+)?")
_NUMERIC_FORMATS: Final = frozenset({"decimal_2dp", "integer"})
_FLUSH_ROWS: Final = 2000
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


def write_submission_file(
    records: Iterable[StoredRecord],
    path: Path,
    *,
    period_start: date,
    period_end: date,
    spec: Spec | None = None,
    on_row: Callable[[StoredRecord], None] | None = None,
) -> AssembledFile:
    """Write the file atomically (temporary name, fsync, rename); ``on_row`` sees every row written."""
    fields: tuple[SpecField, ...] = (spec or load_spec()).file_fields
    plan = [(f.name, f.format in _NUMERIC_FORMATS) for f in fields]
    period = {_PERIOD_FIELDS[0]: cld_date(period_start), _PERIOD_FIELDS[1]: cld_date(period_end)}
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    digest = hashlib.sha256()
    size = rows = opt_out = 0
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=LINE_TERMINATOR)
    with tmp.open("wb") as out:

        def flush() -> None:
            nonlocal size
            data = buf.getvalue().encode("utf-8")
            digest.update(data)
            out.write(data)
            size += len(data)
            buf.seek(0)
            buf.truncate()

        writer.writerow([f.header for f in fields])
        for r in records:
            rec = r.record
            row: list[str] = []
            for name, numeric in plan:
                value = period.get(name) or rec.get(name)
                row.append(neutralise(value, numeric=numeric) if value else "")
            writer.writerow(row)
            rows += 1
            opt_out += r.opt_out
            if on_row is not None:
                on_row(r)
            if rows % _FLUSH_ROWS == 0:
                flush()
        flush()
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return AssembledFile(path=path, sha256=digest.hexdigest(), rows=rows, size_bytes=size, opt_out_rows=opt_out)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()
