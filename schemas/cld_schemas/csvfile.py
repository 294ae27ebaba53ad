"""The LA file format: a CSV with the spec's column headers (any order), UTF-8 with or without BOM.

Pure parsing over an already-open text stream: callers own the file. Rows are streamed, never held.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from cld_schemas.spec import Spec, load_spec

MAX_FIELD_BYTES = 16_000_000
"""Largest CSV cell the reader accepts; a larger one makes the file unusable. Over-long values below this are
read and then reported per row by the validator (CLD053), so one bad cell does not stop the whole file."""

csv.field_size_limit(min(sys.maxsize, MAX_FIELD_BYTES))


class CLDFileError(ValueError):
    """The file cannot be used at all (exit code 2 in the CLI). Messages carry no values from the file."""


@dataclass(frozen=True, slots=True)
class CLDHeader:
    columns: tuple[str | None, ...]
    """For each column position, the spec field name it holds, or None for a column the spec does not know."""
    unknown_columns: tuple[str, ...]
    missing_fields: tuple[str, ...]
    """Spec headers absent from the file (their values are treated as blank)."""


REQUIRED_HEADERS_MIN = 10
"""Fewer recognised headers than this means the file is not a CLD file (or the delimiter is wrong)."""


def read_header(row: list[str], *, spec: Spec | None = None) -> CLDHeader:
    spec = spec or load_spec()
    by_header = {f.header.strip().lower(): f.name for f in spec.fields}
    by_name = {f.name: f.name for f in spec.fields}
    cols: list[str | None] = []
    unknown: list[str] = []
    seen: set[str] = set()
    for raw in row:
        h = raw.strip().lstrip("\ufeff").strip()
        name = by_header.get(h.lower()) or by_name.get(h)
        if name is not None and name in seen:
            raise CLDFileError(f"column {h!r} appears twice")
        if name is None:
            unknown.append(h[:80])
        else:
            seen.add(name)
        cols.append(name)
    missing = tuple(f.header for f in spec.fields if f.name not in seen and f.in_file is True)
    return CLDHeader(columns=tuple(cols), unknown_columns=tuple(unknown), missing_fields=missing)


class CLDRows:
    """The data rows of an LA file, streamed. Counts rows whose number of cells differs from the header
    (missing cells are read as blank, extra cells ignored) so the caller can report them, by line number only."""

    def __init__(self, reader: Any, columns: tuple[str | None, ...], names: list[str], *, sparse: bool = False) -> None:
        self._reader = reader
        self._sparse = sparse
        self._columns = columns
        self._width = len(columns)
        self._blank: dict[str, str | None] = dict.fromkeys(names)
        self.short_rows = 0
        self.long_rows = 0
        self.ragged_lines: list[int] = []
        """Line numbers (1-based, header = line 1) of the first few ragged rows."""

    def __iter__(self) -> Iterator[dict[str, str | None]]:
        reader, columns, width = self._reader, self._columns, self._width
        try:
            for cells in reader:
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue
                if len(cells) != width:
                    if len(cells) < width:
                        self.short_rows += 1
                    else:
                        self.long_rows += 1
                    if len(self.ragged_lines) < 20:
                        self.ragged_lines.append(reader.line_num)
                if self._sparse:  # only non-blank values: the validator's fast path (absent == blank)
                    yield {name: v for name, cell in zip(columns, cells, strict=False) if name and (v := cell.strip())}
                    continue
                rec = self._blank.copy()
                for name, cell in zip(columns, cells, strict=False):
                    if name is not None:
                        v = cell.strip()
                        rec[name] = v or None
                yield rec
        except csv.Error as exc:
            raise CLDFileError(f"CSV structure broken at line {reader.line_num} ({exc})") from None


def iter_records(stream: TextIO, *, spec: Spec | None = None, sparse: bool = False) -> tuple[CLDHeader, CLDRows]:
    """Parse the header now (raising CLDFileError if the file is unusable) and stream the rows.

    Each row is a dict of every known field name to its stripped value, or None when blank. With ``sparse``,
    blank fields are left out of the dict instead (faster; for readers that treat a missing key as blank).
    """
    spec = spec or load_spec()
    reader = csv.reader(stream)
    try:
        first = next(reader)
    except StopIteration:
        raise CLDFileError("the file is empty") from None
    except csv.Error as exc:
        raise CLDFileError(f"not a readable CSV file ({exc})") from None
    header = read_header(first, spec=spec)
    recognised = sum(1 for c in header.columns if c is not None)
    if recognised == 0 and len(first) == 1 and (";" in first[0] or "\t" in first[0] or "|" in first[0]):
        raise CLDFileError("no CLD column headers found: the file does not look comma-separated")
    if recognised < REQUIRED_HEADERS_MIN:
        raise CLDFileError(
            f"only {recognised} of the specification's column headers were found; this is not a CLD file "
            "(check it is comma-separated with the spec's headers on the first line)"
        )
    return header, CLDRows(reader, header.columns, [f.name for f in spec.fields], sparse=sparse)
