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

import csv
import hashlib
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

import polars as pl

from cld_runtime.files import private_dir
from cld_schemas.spec import Spec, load_spec

from ..domain.frames import stored_frame
from ..domain.records import StoredRecord

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


_FORMULA_START_PATTERN: Final = r"^[=+\-@\t\r]"
"""``neutralise`` as a pattern: a value starting with = + - @ tab or carriage return."""
_NUMBER_PATTERN: Final = r"^-?\d+(\.\d+)?$"


def _cells(spec: Spec, *, period_start: date, period_end: date) -> list[pl.Expr]:
    """The file's columns in spec order (``assemble``): the stated period on every row, formulas defused, blanks
    empty (null: written as nothing)."""
    period = {_PERIOD_FIELDS[0]: cld_date(period_start), _PERIOD_FIELDS[1]: cld_date(period_end)}
    out: list[pl.Expr] = []
    for f in spec.file_fields:
        if f.name in period:
            out.append(pl.lit(period[f.name], dtype=pl.String).alias(f.name))
            continue
        v = pl.col(f.name)
        formula = v.str.contains(_FORMULA_START_PATTERN)
        if f.format in _NUMERIC_FORMATS:  # a plain negative number is a number, not a formula
            formula = formula & ~v.str.contains(_NUMBER_PATTERN)
        out.append(pl.when(v == "").then(None).when(formula).then(pl.lit("'") + v).otherwise(v).alias(f.name))
    return out


def write_frames(
    batches: Iterable[pl.DataFrame],
    path: Path,
    *,
    period_start: date,
    period_end: date,
    spec: Spec | None = None,
    on_batch: Callable[[pl.DataFrame], None] | None = None,
) -> AssembledFile:
    """Write the file atomically (temporary name, fsync, rename) from decoded batches in file order, hashing the
    bytes as they are written; ``on_batch`` sees every batch after its rows are written."""
    spec = spec or load_spec()
    cells = _cells(spec, period_start=period_start, period_end=period_end)
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    digest = hashlib.sha256()
    size = rows = opt_out = 0
    with tmp.open("wb") as out:

        def emit(data: bytes) -> None:
            nonlocal size
            digest.update(data)
            out.write(data)
            size += len(data)

        head = io.StringIO()
        csv.writer(head, lineterminator=LINE_TERMINATOR).writerow([f.header for f in spec.file_fields])
        emit(head.getvalue().encode("utf-8"))
        for batch in batches:
            if batch.height == 0:
                continue
            body = io.BytesIO()
            # RFC 4180 quoting where needed, as csv.writer's QUOTE_MINIMAL (the golden corpus holds it to that).
            batch.select(cells).write_csv(body, include_header=False, line_terminator=LINE_TERMINATOR)
            emit(body.getvalue())
            rows += batch.height
            opt_out += int(batch["_opt_out"].sum())
            if on_batch is not None:
                on_batch(batch)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return AssembledFile(path=path, sha256=digest.hexdigest(), rows=rows, size_bytes=size, opt_out_rows=opt_out)


def write_submission_file(
    records: Iterable[StoredRecord],
    path: Path,
    *,
    period_start: date,
    period_end: date,
    spec: Spec | None = None,
    on_row: Callable[[StoredRecord], None] | None = None,
    batch: int = 2000,
) -> AssembledFile:
    """:func:`write_frames` over records read one by one; ``on_row`` sees every row written, in order."""
    spec = spec or load_spec()
    held: dict[int, list[StoredRecord]] = {}

    def batches() -> Iterator[pl.DataFrame]:
        row = 1
        for chunk in _chunks(records, batch):
            held[row] = list(chunk)
            yield stored_frame(held[row], first_row=row, spec=spec)
            row += len(chunk)

    def seen(frame: pl.DataFrame) -> None:
        for r in held.pop(int(frame["_row"][0])):
            if on_row is not None:
                on_row(r)

    return write_frames(batches(), path, period_start=period_start, period_end=period_end, spec=spec, on_batch=seen)


def _chunks(items: Iterable[StoredRecord], size: int) -> Iterator[list[StoredRecord]]:
    chunk: list[StoredRecord] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()
