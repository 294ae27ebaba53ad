"""Reading the files LAs really have (issue 13 item 1): the same rows from UTF-8 (with or without BOM),
Windows-1252, semicolon/tab/pipe separated CSV and .xlsx; overrides; clear refusals for what cannot be read."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import Workbook

from cld_schemas.csvfile import CLDFileError
from cld_schemas.lafile import detect_encoding, open_la_file, sniff_delimiter
from cld_schemas.spec import Release, load_spec
from tests.support.builders import a_service_row

SPEC = load_spec()
HEADERS = [f.header for f in SPEC.file_fields]


def _rows() -> list[list[str]]:
    a = a_service_row(Release.R2, la_person_unique_identifier="P-É-1", event_description="Café visit – £12")
    b = a_service_row(Release.R2, la_person_unique_identifier="P-2")
    return [[(r.get(f.name) or "") for f in SPEC.file_fields] for r in (a, b)]


def _csv_text(delimiter: str = ",") -> str:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    w.writerow(HEADERS)
    w.writerows(_rows())
    return buf.getvalue()


def _read(path: Path, **kw: str) -> tuple[list[list[str]], str]:
    with open_la_file(path, **kw) as lf:
        rows = list(csv.reader(lf.lines, delimiter=lf.format.delimiter))
        return rows, lf.format.describe()


@pytest.mark.parametrize(
    ("encoding", "delimiter", "described"),
    [
        ("utf-8", ",", "UTF-8, comma separated"),
        ("utf-8-sig", ",", "UTF-8 (with BOM), comma separated"),
        ("cp1252", ",", "Windows-1252 (detected), comma separated"),
        ("utf-8", ";", "UTF-8, semicolon separated"),
        ("cp1252", ";", "Windows-1252 (detected), semicolon separated"),
        ("utf-8", "\t", "UTF-8, tab separated"),
        ("utf-8", "|", "UTF-8, pipe separated"),
    ],
)
def test_every_csv_form_gives_the_same_rows(tmp_path: Path, encoding: str, delimiter: str, described: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(_csv_text(delimiter).encode(encoding))
    rows, how = _read(path)
    assert rows == [HEADERS, *_rows()]
    assert how == described


def test_overrides_win_over_detection(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(_csv_text(";").encode("cp1252"))
    rows, how = _read(path, encoding="cp1252", delimiter="semicolon")
    assert rows == [HEADERS, *_rows()]
    assert how == "Windows-1252, semicolon separated"


def test_a_utf8_sample_cut_mid_character_is_still_utf8() -> None:
    data = "é".encode() * 10
    assert detect_encoding(data[:-1], complete=False) == ("utf-8", False)


def test_the_delimiter_is_the_one_that_finds_the_spec_headers() -> None:
    assert sniff_delimiter(";".join(HEADERS), spec=SPEC) == ";"
    assert sniff_delimiter(",".join(HEADERS), spec=SPEC) == ","
    # a header with commas inside quoted cells but semicolon-separated
    assert sniff_delimiter(";".join(f'"{h}"' for h in HEADERS), spec=SPEC) == ";"


def _workbook(path: Path, rows: list[list[object]], *, title: str = "CLD", cover: bool = False) -> Path:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    if cover:
        ws.title = "Cover"
        ws.append(["Notes"])
        ws = wb.create_sheet(title)
    else:
        ws.title = title
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def test_an_xlsx_gives_the_same_rows_with_dates_and_numbers_as_text(tmp_path: Path) -> None:
    rows = _rows()
    typed: list[list[object]] = []
    for r in rows:
        cells: list[object] = list(r)
        for i, h in enumerate(HEADERS):
            v = r[i]
            if h == "NHS Number" and v:
                cells[i] = int(v)  # typed as a number in Excel
            elif h == "Date of Birth" and v:
                cells[i] = datetime.strptime(v, "%d/%m/%Y")
        typed.append(cells)
    path = _workbook(tmp_path / "f.xlsx", [HEADERS, *typed, [None] * 3])
    got, how = _read(path)
    assert got[:3] == [HEADERS, *rows]
    assert got[3:] == [[]]  # the empty sheet row reads as a blank line (skipped), so row numbers stay Excel's
    assert how == "Excel workbook, sheet 'CLD'"


def test_sheet_selection_and_a_missing_sheet(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "f.xlsx", [HEADERS, *_rows()], title="Data", cover=True)
    got, how = _read(path, sheet="Data")
    assert got == [HEADERS, *_rows()]
    assert "Data" in how
    with pytest.raises(CLDFileError, match=r"no sheet named 'Nope'.*Cover, Data"):
        _read(path, sheet="Nope")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("f.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "old Excel .xls"),
        ("f.xlsx", b"not a zip", "not an Excel workbook"),
        ("f.xlsx", b"PK\x03\x04broken", "cannot be opened"),
        ("f.csv", "\ufeffa,b".encode("utf-16"), "UTF-16"),
    ],
)
def test_what_cannot_be_read_is_refused_with_what_to_do(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CLDFileError, match=expected):
        _read(path)


def test_bad_overrides_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text(_csv_text())
    with pytest.raises(CLDFileError, match="unknown encoding"):
        _read(path, encoding="klingon")
    with pytest.raises(CLDFileError, match="one character"):
        _read(path, delimiter=";;")
    with pytest.raises(CLDFileError, match="--sheet applies"):
        _read(path, sheet="x")
    with pytest.raises(CLDFileError, match="no such file"):
        _read(tmp_path / "missing.csv")


def test_a_binary_file_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CLDFileError, match="not a text file"):
        _read(path)
