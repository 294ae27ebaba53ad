"""The files LAs really have: UTF-8 or Windows-1252 CSV, comma, semicolon, tab or pipe separated, or ``.xlsx``.

:func:`open_la_file` turns any of them into text lines of one delimiter, with what was detected (encoding,
delimiter, sheet) so the summary can say so; ``csvfile.iter_records`` parses those lines. Detection:

- encoding: a UTF-8 byte-order mark means UTF-8; else a sample that decodes as UTF-8 is UTF-8; else
  charset-normalizer picks among Windows-1252, ISO-8859-1 and UTF-8 (Excel's "CSV" on a UK Windows machine is
  Windows-1252). ``encoding=`` overrides. A later byte that does not decode is a clear error naming the line.
- delimiter: the candidate (``,`` ``;`` tab ``|``) that splits the first line into the most of the spec's column
  headers. ``delimiter=`` overrides.
- ``.xlsx``: the first sheet (or ``sheet=``), read-only and streamed; dates as dd/mm/yyyy, whole numbers without
  ``.0`` (an NHS number typed as a number stays ten digits), text as it is. Excel's row numbers are the line
  numbers (the heading is row 1).

Pure reading over a path: no network, no values of the file in any message.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TextIO

from cld_schemas.csvfile import CLDFileError
from cld_schemas.spec import Spec, load_spec

DELIMITERS: dict[str, str] = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_SAMPLE_BYTES = 1 << 20
_CANDIDATE_ENCODINGS = ("utf_8", "cp1252", "latin_1")


@dataclass(frozen=True, slots=True)
class LAFileFormat:
    """What the file turned out to be (for the summary: 'read as Windows-1252, semicolon separated')."""

    kind: str
    """``csv`` or ``xlsx``."""
    encoding: str | None
    """Python codec name used for a CSV (``utf-8-sig``, ``utf-8``, ``cp1252``...); None for a workbook."""
    encoding_detected: bool
    """True when the encoding was guessed from the bytes rather than given or marked by a BOM."""
    delimiter: str
    sheet: str | None = None

    def describe(self) -> str:
        if self.kind == "xlsx":
            return f"Excel workbook, sheet {self.sheet!r}"
        enc = {"utf-8-sig": "UTF-8 (with BOM)", "utf-8": "UTF-8", "cp1252": "Windows-1252", "latin-1": "ISO-8859-1"}
        name = enc.get(self.encoding or "", self.encoding or "")
        how = " (detected)" if self.encoding_detected else ""
        return f"{name}{how}, {DELIMITERS.get(self.delimiter, repr(self.delimiter))} separated"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "encoding": self.encoding,
            "encoding_detected": self.encoding_detected,
            "delimiter": DELIMITERS.get(self.delimiter, self.delimiter),
            "sheet": self.sheet,
            "described": self.describe(),
        }


@dataclass(slots=True)
class LAFile:
    """An open LA file: ``lines`` to hand to ``csv.reader`` with ``format.delimiter``; ``position()`` for progress."""

    format: LAFileFormat
    lines: TextIO | Iterator[str]
    size: int
    _raw: Any = None

    def position(self) -> int:
        """Bytes read so far (CSV) or an estimate (workbook rows read); for progress bars only."""
        if self._raw is not None:
            try:
                return int(self._raw.tell())
            except (OSError, ValueError):
                return 0
        return 0


def _normalise_codec(name: str) -> str:
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        raise CLDFileError(
            f"unknown encoding {name!r}: use for example utf-8, cp1252 (Windows-1252) or latin-1"
        ) from None
    return {"utf-8": "utf-8", "cp1252": "cp1252", "iso8859-1": "latin-1", "latin-1": "latin-1"}.get(
        canonical, canonical
    )


def detect_encoding(sample: bytes, *, complete: bool) -> tuple[str, bool]:
    """(codec, detected?) for a CSV whose first bytes are ``sample`` (``complete``: the sample is the whole file)."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", False
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CLDFileError(
            "the file is UTF-16 text (Excel's 'Unicode Text'): in Excel use Save As > 'CSV UTF-8 (Comma delimited)'"
        )
    try:
        # A sample cut mid-character is still UTF-8: decode incrementally and allow an unfinished last character.
        codecs.getincrementaldecoder("utf-8")("strict").decode(sample, final=complete)
        return "utf-8", False
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # lazy: only files that are not UTF-8 need it

    best = from_bytes(sample, cp_isolation=list(_CANDIDATE_ENCODINGS)).best()
    if best is None:
        return "cp1252", True
    return _normalise_codec(best.encoding), True


def sniff_delimiter(first_line: str, *, spec: Spec) -> str:
    """The delimiter that splits the heading into the most spec column headers (comma on a tie or none)."""
    from cld_schemas.csvfile import read_header

    best, best_count = ",", -1
    for d in DELIMITERS:
        try:
            cells = next(csv.reader([first_line], delimiter=d))
        except (csv.Error, StopIteration):
            continue
        try:
            count = sum(1 for c in read_header(cells, spec=spec).columns if c is not None)
        except CLDFileError:
            count = 0
        if count > best_count:
            best, best_count = d, count
    return best


@contextmanager
def open_la_file(
    path: Path,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    spec: Spec | None = None,
) -> Iterator[LAFile]:
    """Open an LA's CLD file whatever its encoding, delimiter or format; raises CLDFileError when it cannot be."""
    spec = spec or load_spec()
    if delimiter is not None:
        delimiter = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|", "\\t": "\t"}.get(delimiter, delimiter)
        if len(delimiter) != 1 or delimiter in '\r\n"':
            raise CLDFileError("--delimiter must be one character (or comma, semicolon, tab, pipe)")
    try:
        size = path.stat().st_size
        raw = path.open("rb")
    except FileNotFoundError:
        raise CLDFileError("no such file") from None
    except IsADirectoryError:
        raise CLDFileError("that is a folder, not a file") from None
    except OSError as exc:
        raise CLDFileError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    with raw:
        head = raw.read(_SAMPLE_BYTES)
        is_xlsx = head.startswith(b"PK\x03\x04") or path.suffix.lower() in (".xlsx", ".xlsm")
        if is_xlsx:
            if not head.startswith(b"PK\x03\x04"):
                raise CLDFileError("the file is named .xlsx but is not an Excel workbook")
            raw.seek(0)
            with _open_xlsx(raw, sheet=sheet) as (name, lines):
                yield LAFile(
                    format=LAFileFormat(kind="xlsx", encoding=None, encoding_detected=False, delimiter=",", sheet=name),
                    lines=lines,
                    size=size,
                )
            return
        if head.startswith(b"\xd0\xcf\x11\xe0"):
            raise CLDFileError(
                "the file is an old Excel .xls workbook: in Excel use Save As > 'Excel Workbook (.xlsx)'"
            )
        if sheet is not None:
            raise CLDFileError("--sheet applies to an .xlsx workbook only")
        if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise CLDFileError("this is not a text file (it holds NUL bytes): give the CLD file as CSV or .xlsx")
        detected = False
        if encoding is None:
            encoding, detected = detect_encoding(head, complete=len(head) < _SAMPLE_BYTES)
        else:
            encoding = _normalise_codec(encoding)
            if encoding == "utf-8" and head.startswith(codecs.BOM_UTF8):
                encoding = "utf-8-sig"
        raw.seek(0)
        text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
        if delimiter is None:
            try:
                first = head.decode(encoding, errors="replace").lstrip("\ufeff").splitlines()[0] if head else ""
            except IndexError:
                first = ""
            delimiter = sniff_delimiter(first, spec=spec)
        yield LAFile(
            format=LAFileFormat(kind="csv", encoding=encoding, encoding_detected=detected, delimiter=delimiter),
            lines=text,
            size=size,
            _raw=raw,
        )


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.time() == time(0, 0):
            return value.strftime("%d/%m/%Y")
        return value.strftime("%d/%m/%Y %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


@contextmanager
def _open_xlsx(raw: Any, *, sheet: str | None) -> Iterator[tuple[str, Iterator[str]]]:
    from openpyxl import load_workbook  # lazy: only workbooks need it

    try:
        wb = load_workbook(raw, read_only=True, data_only=True)
    except Exception:  # openpyxl raises several unrelated types for a damaged workbook
        raise CLDFileError("the workbook cannot be opened (damaged, or password protected)") from None
    try:
        if sheet is None:
            ws = wb.worksheets[0]
        elif sheet in wb.sheetnames:
            ws = wb[sheet]
        else:
            raise CLDFileError(f"no sheet named {sheet[:60]!r}; the workbook has: {', '.join(wb.sheetnames)[:300]}")

        def lines() -> Iterator[str]:
            buf = io.StringIO(newline="")
            writer = csv.writer(buf, lineterminator="\n")
            for row in ws.iter_rows(values_only=True):
                cells = [_cell_text(c) for c in row]
                if not any(c.strip() for c in cells):
                    yield "\n"  # an empty (or only formatted) sheet row: skipped, and the row numbers stay Excel's
                    continue
                writer.writerow(cells)
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()

        yield ws.title, lines()
    finally:
        wb.close()
