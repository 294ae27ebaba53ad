"""`cld validate` on the files LAs really have (issue 13 item 1): the same (row, field) failures from a UTF-8
comma CSV, a Windows-1252 CSV (as Excel saves 'CSV' on Windows), a semicolon CSV and an .xlsx workbook; the
summary says how the file was read; a byte the encoding cannot read names its line and the Excel fix; blank lines
keep the Excel row numbers right."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import pytest
from openpyxl import Workbook
from typer.testing import CliRunner

from cld_cli.main import app
from cld_schemas.spec import Release, load_spec
from cld_synth.generator import generate_rows

SPEC = load_spec()
HEADERS = [f.header for f in SPEC.file_fields]
runner = CliRunner()


def _rows() -> list[list[str]]:
    rows = [
        row
        for row, _ in generate_rows(
            people=25, seed=13, period_end=date(2026, 3, 31), release=Release.R2, error_rate=0.15
        )
    ]
    out = [[(r.get(f.name) or "") for f in SPEC.file_fields] for r in rows]
    first = HEADERS.index("First Name")
    out[0][first] = "Zoë"  # a character Windows-1252 writes as one byte that is not UTF-8
    out[1][HEADERS.index("Event Description")] = "Café visit, £12"
    return out


def _csv(delimiter: str = ",") -> str:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    w.writerow(HEADERS)
    w.writerows(_rows())
    return buf.getvalue()


def _validate(path: Path, tmp_path: Path, *extra: str) -> tuple[int, dict[str, object], str]:
    report = tmp_path / f"{path.name}.json"
    result = runner.invoke(app, ["validate", str(path), "--la", "318", "--json", str(report), *extra])
    assert "Traceback" not in result.output
    data = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
    return result.exit_code, data, result.output


def _failures(data: dict[str, object]) -> list[tuple[int, int, str, str]]:
    findings = data["findings"]
    assert isinstance(findings, list)
    return [(f["row"], f["excel_row"], f["field"], f["rule"]) for f in findings]


def test_the_same_failures_from_every_form_of_the_file(tmp_path: Path) -> None:
    forms = {
        "utf8.csv": _csv().encode("utf-8"),
        "utf8-bom.csv": _csv().encode("utf-8-sig"),
        "cp1252.csv": _csv().encode("cp1252"),
        "semicolon.csv": _csv(";").encode("utf-8"),
        "semicolon-cp1252.csv": _csv(";").encode("cp1252"),
        "tab.txt": _csv("\t").encode("utf-8"),
    }
    results = {}
    for name, content in forms.items():
        path = tmp_path / name
        path.write_bytes(content)
        code, data, _ = _validate(path, tmp_path)
        assert code == 1, name
        results[name] = _failures(data)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "CLD"
    ws.append(HEADERS)
    for r in _rows():
        ws.append(r)
    wb.save(tmp_path / "book.xlsx")
    code, data, output = _validate(tmp_path / "book.xlsx", tmp_path)
    assert code == 1
    results["book.xlsx"] = _failures(data)
    reference = results["utf8.csv"]
    assert reference, "the generated file has injected errors"
    for name, got in results.items():
        assert got == reference, name
    assert data["summary"]["read_as"]["kind"] == "xlsx"  # type: ignore[index]
    assert "Excel workbook, sheet 'CLD'" in " ".join(output.split())


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("w.csv", _csv().encode("cp1252"), "Windows-1252 (detected), comma separated"),
        ("s.csv", _csv(";").encode("utf-8"), "UTF-8, semicolon separated"),
    ],
)
def test_the_summary_says_how_the_file_was_read(tmp_path: Path, name: str, content: bytes, said: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    _, data, output = _validate(path, tmp_path)
    assert data["summary"]["read_as"]["described"] == said  # type: ignore[index]
    assert f"read as: {said}" in " ".join(output.split())


def test_overrides_are_used(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(_csv("|").encode("cp1252"))
    _, data, _ = _validate(path, tmp_path, "--encoding", "cp1252", "--delimiter", "pipe")
    assert data["summary"]["read_as"]["described"] == "Windows-1252, pipe separated"  # type: ignore[index]


def test_a_byte_the_encoding_cannot_read_names_its_line_and_the_excel_fix(tmp_path: Path) -> None:
    # The first megabyte is UTF-8 (so UTF-8 is detected); a Windows-1252 byte comes after it, on a known line.
    text = _csv()
    lines = text.splitlines(keepends=True)
    body = lines[0] + "".join(lines[1:] * 200)
    while len(body.encode()) < 1_100_000:
        body += "".join(lines[1:])
    line_of_bad = body.count("\n") + 1
    bad = body.encode("utf-8") + (lines[1].replace("Café", "Caf\u00e9").encode("cp1252"))
    path = tmp_path / "mixed.csv"
    path.write_bytes(bad)
    code, _, output = _validate(path, tmp_path)
    said = " ".join(output.split())
    assert code == 2
    assert f"line {line_of_bad}:" in said
    assert "CSV UTF-8" in said
    assert "--encoding" in said


def test_blank_lines_keep_excel_row_numbers(tmp_path: Path) -> None:
    lines = _csv().splitlines(keepends=True)
    text = lines[0] + lines[1] + "\r\n\r\n" + "".join(lines[2:])
    path = tmp_path / "gaps.csv"
    path.write_text(text, encoding="utf-8", newline="")
    _, data, _ = _validate(path, tmp_path)
    reference = tmp_path / "plain.csv"
    reference.write_text(_csv(), encoding="utf-8", newline="")
    _, ref, _ = _validate(reference, tmp_path)
    for got, want in zip(_failures(data), _failures(ref), strict=True):
        assert got[0] == want[0]  # the same data row
        assert got[1] == (want[1] + 2 if want[0] >= 2 else want[1])  # two blank lines before data row 2
    physical = text.splitlines()
    for row, excel_row, _field, _rule in _failures(data):
        assert physical[excel_row - 1].strip(), (row, excel_row)  # the Excel row is the row's own line
