"""The LA file format: a CSV with the spec's column headers (any order), UTF-8 with or without BOM.

Pure parsing over an already-open text stream: callers own the file. Rows are streamed, never held.

Parsed strictly (issue 10): one row is one physical line. A double quote that is never closed would otherwise
swallow every following line into one cell (a file of 6 rows read as 2, four people silently missing), so a
record that spans more than one physical line (a quoted cell holding a line break: no CLD value holds one),
a quote left open at the end of the file, or text after a closing quote is a :class:`CLDFileError` naming the
physical line where the record starts. Errors name line numbers only, never a value. Open the stream with
``newline=""`` so that line breaks reach the reader untranslated.
"""

from __future__ import annotations

import csv
import sys
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO

from cld_schemas.spec import Spec, load_spec

MAX_FIELD_BYTES = 16_000_000
"""Largest CSV cell the reader accepts; a larger one makes the file unusable. Over-long values below this are
read and then reported per row by the validator (CLD053), so one bad cell does not stop the whole file."""

csv.field_size_limit(min(sys.maxsize, MAX_FIELD_BYTES))


class CLDFileError(ValueError):
    """The file cannot be used at all (exit code 2 in the CLI). Messages carry no values from the file."""


class CLDStructureError(CLDFileError):
    """The CSV structure is broken at a known physical line (1-based, header = line 1)."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line


_QUOTE_HINT = (
    "check the double quotes on that line: a cell that starts with a quote must end with one, and a quote "
    'inside a quoted cell is written twice (""); then use the whole corrected file again'
)
SPANS_LINES: Final = (
    "a quoted cell runs over a line break (a stray or unterminated double quote, or a cell holding a line "
    "break, which no CLD value may contain); nothing of the file was used; " + _QUOTE_HINT
)
NEVER_CLOSED: Final = (
    "a double quote opened on this line is not closed on it (the rows after it would be read as one cell); "
    "nothing of the file was used; " + _QUOTE_HINT
)


def _structure_error(exc: csv.Error, line: int, last: int) -> CLDStructureError:
    """The csv module's error, as a CLDStructureError at the record's first physical line (no values).
    ``last``: the physical line the reader had reached (beyond ``line`` when a quote stayed open)."""
    text = str(exc)
    if last > line or "unexpected end of data" in text or "EOF" in text:
        return CLDStructureError(line, NEVER_CLOSED)
    if "expected after" in text:
        return CLDStructureError(line, "text follows a closing double quote in a cell; " + _QUOTE_HINT)
    if "field larger than field limit" in text:
        return CLDStructureError(line, f"a cell is larger than {MAX_FIELD_BYTES} bytes; the file cannot be used")
    if "NUL" in text or "null byte" in text:
        return CLDStructureError(line, "the line holds a NUL byte; this is not a text CSV file")
    return CLDStructureError(line, f"CSV structure broken ({text[:80]})")


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
        self.line = 1
        """The physical line (header = line 1) of the row just yielded: the row number Excel shows for it."""
        self.line_offsets: list[tuple[int, int]] = []
        """(data row, blank lines skipped before it) each time that count grows: data row n is on line
        n + 1 + the offset of the last entry whose data row <= n (``excel_row``)."""

    def _cells(self) -> Iterator[list[str]]:
        """The raw cells of each data row, after the structure checks; blank lines skipped, ragged rows counted.
        The one place the file's rows are parsed: the record dicts below and :meth:`cells` share it."""
        reader, width = self._reader, self._width
        end = reader.line_num  # physical lines read so far (the header's)
        n = skipped = 0
        while True:
            start = end + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise _structure_error(exc, start, reader.line_num) from None
            end = reader.line_num
            if end != start:
                # One record over several physical lines: a quoted cell holds a line break. Either a quote
                # was left open by mistake (the rows after it would be read as one cell) or a value holds a
                # line break, which no CLD value may; both are refused, never read as fewer rows.
                raise CLDStructureError(start, SPANS_LINES)
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                skipped += 1
                continue
            n += 1
            if start != n + 1 + (self.line_offsets[-1][1] if self.line_offsets else 0):
                self.line_offsets.append((n, skipped))
            self.line = start
            if len(cells) != width:
                if len(cells) < width:
                    self.short_rows += 1
                else:
                    self.long_rows += 1
                if len(self.ragged_lines) < 20:
                    self.ragged_lines.append(start)
            yield cells

    def __iter__(self) -> Iterator[dict[str, str | None]]:
        columns = self._columns
        for cells in self._cells():
            if self._sparse:  # only non-blank values: the validator's fast path (absent == blank)
                yield {name: v for name, cell in zip(columns, cells, strict=False) if name and (v := cell.strip())}
                continue
            rec = self._blank.copy()
            for name, cell in zip(columns, cells, strict=False):
                if name is not None:
                    v = cell.strip()
                    rec[name] = v or None
            yield rec

    def cells(self) -> Iterator[list[str]]:
        """The data rows as lists of raw (unstripped) cells, each padded with "" or cut to the header's width (as
        the record dicts read missing cells as blank and ignore extra ones). For columnar readers: the same
        parsing, checks and ragged-row counts as iterating the records."""
        width = self._width
        pad = [""] * width
        for cells in self._cells():
            yield cells if len(cells) == width else (cells + pad)[:width]

    @property
    def columns(self) -> tuple[str | None, ...]:
        """For each cell position, the spec field name it holds (None: a column the spec does not know)."""
        return self._columns


def excel_row(data_row: int, offsets: Sequence[tuple[int, int]] | Sequence[Sequence[int]] = ()) -> int:
    """The row Excel shows for 1-based data row ``data_row`` (the header is row 1), given
    :attr:`CLDRows.line_offsets` (blank lines skipped before it; none: ``data_row + 1``)."""
    i = bisect_right([int(o[0]) for o in offsets], data_row) if offsets else 0
    return data_row + 1 + (int(offsets[i - 1][1]) if i else 0)


def iter_records(
    stream: TextIO | Iterable[str], *, spec: Spec | None = None, sparse: bool = False, delimiter: str = ","
) -> tuple[CLDHeader, CLDRows]:
    """Parse the header now (raising CLDFileError if the file is unusable) and stream the rows.

    Each row is a dict of every known field name to its stripped value, or None when blank. With ``sparse``,
    blank fields are left out of the dict instead (faster; for readers that treat a missing key as blank).
    ``stream``: an open text file or any iterable of lines (``cld_schemas.lafile`` gives both, with the detected
    ``delimiter``).
    """
    spec = spec or load_spec()
    reader = csv.reader(stream, strict=True, delimiter=delimiter)
    try:
        first = next(reader)
    except StopIteration:
        raise CLDFileError("the file is empty") from None
    except csv.Error as exc:
        raise _structure_error(exc, 1, reader.line_num) from None
    if reader.line_num != 1:
        raise CLDStructureError(1, "(the header) " + SPANS_LINES)
    header = read_header(first, spec=spec)
    recognised = sum(1 for c in header.columns if c is not None)
    named = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}.get(delimiter, repr(delimiter))
    others = [d for d in (",", ";", "\t", "|") if d != delimiter]
    if recognised == 0 and len(first) == 1 and any(d in first[0] for d in others):
        raise CLDFileError(f"no CLD column headers found: the file does not look {named}-separated")
    if recognised < REQUIRED_HEADERS_MIN:
        raise CLDFileError(
            f"only {recognised} of the specification's column headers were found; this is not a CLD file "
            f"(check it is {named}-separated with the spec's headers on the first line)"
        )
    return header, CLDRows(reader, header.columns, [f.name for f in spec.fields], sparse=sparse)
