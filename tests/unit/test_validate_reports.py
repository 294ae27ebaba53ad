"""`cld validate --xlsx/--html/--json -` (issue 13, item 4): the reports carry every failure with its Excel row
and a fix, read back with openpyxl and an HTML parser; write errors exit 2 without a traceback."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from cld_cli import cmd_validate
from cld_cli.main import app
from cld_schemas.spec import Release, load_spec
from tests.support.builders import Row, a_request_row, a_service_row

SPEC = load_spec()
HEADERS = [f.header for f in SPEC.file_fields]
BY_HEADER = {f.header: f.name for f in SPEC.fields}
COLUMNS = ["Row", "Event Reference", "Field", "Status", "Validity", "Rule", "Message", "Fix"]
BAD_NHS = "9990000019"  # fails the check digit (synthetic 999 range)
runner = CliRunner()


def _write(path: Path, rows: list[Row]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADERS)
        for row in rows:
            w.writerow([row.get(BY_HEADER[h]) or "" for h in HEADERS])
    return path


def _rows() -> list[Row]:
    return [
        a_service_row(Release.R2, event_reference="EV-OK-1"),
        a_service_row(Release.R2, event_reference="EV-GENDER", gender="female"),  # data row 2 = Excel row 3
        a_service_row(Release.R2, event_reference="EV-NHS", nhs_number=BAD_NHS),
        a_service_row(Release.R2, event_reference="EV-ISO", event_start_date="2025-10-01"),
        a_request_row(Release.R2, event_reference="EV-REQ", event_end_date=None),
        a_service_row(Release.R2, event_reference="=HYPERLINK(1)", postcode="QZ99 9QQX"),
    ]


def _run(tmp_path: Path, *extra: str) -> tuple[Path, Path, Path, dict[str, Any]]:
    src = _write(tmp_path / "la-file.csv", _rows())
    xlsx, page, js = tmp_path / "r.xlsx", tmp_path / "r.html", tmp_path / "r.json"
    result = runner.invoke(
        app,
        [
            "validate",
            str(src),
            "--release",
            "r2",
            "--la",
            "318",
            "--xlsx",
            str(xlsx),
            "--html",
            str(page),
            "--json",
            str(js),
            *extra,
        ],
    )
    assert "Traceback" not in result.output
    assert result.exit_code == 1, result.output
    return xlsx, page, js, json.loads(js.read_text(encoding="utf-8"))


def _expected(data: dict[str, Any]) -> set[tuple[int, str, str, str, str]]:
    found = {(f["excel_row"], f["event_reference"], f["field"], f["rule"], f["fix"]) for f in data["findings"]}
    assert all(f["excel_row"] == f["row"] + 1 for f in data["findings"])
    return found


def test_the_json_report_keeps_its_fields_and_adds_excel_row_reference_and_fix(tmp_path: Path) -> None:
    _, _, _, data = _run(tmp_path)
    by_ref = {f["event_reference"]: f for f in data["findings"]}
    gender = by_ref["EV-GENDER"]
    assert (gender["row"], gender["excel_row"], gender["field"], gender["rule"]) == (2, 3, "Gender", "CLD004")
    assert gender["fix"] == "'female' -> 'Female'"
    assert by_ref["EV-ISO"]["fix"] == "Write 01/10/2025 (dd/mm/yyyy), not '2025-10-01'."
    assert "add it, or leave the event out until it ends" in by_ref["EV-REQ"]["fix"]
    assert {"row", "field", "status", "validity", "rule", "message"} <= set(gender)
    assert data["summary"]["profile"]["fields"][0]["field"] == "LA Code"


def test_the_workbook_has_every_failure_with_its_excel_row_and_fix(tmp_path: Path) -> None:
    xlsx, _, _, data = _run(tmp_path)
    wb = load_workbook(xlsx)
    assert wb.sheetnames == ["Summary", "Findings", "Values"]
    ws = wb["Findings"]
    rows = list(ws.iter_rows(values_only=True))
    assert list(rows[0]) == COLUMNS
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:H{len(rows)}"
    got = {(r[0], r[1], r[2], r[5], r[7]) for r in rows[1:]}
    assert got == _expected(data)
    assert len(rows) - 1 == data["summary"]["failures"]
    assert all(r[7] for r in rows[1:])  # every line has a fix
    # a cell that looks like a formula stays text
    cell = next(c for c in ws["B"] if c.value == "=HYPERLINK(1)")
    assert cell.data_type == "s"


def test_the_workbook_summary_shows_the_profile_and_hides_personal_values(tmp_path: Path) -> None:
    xlsx, _, _, _ = _run(tmp_path)
    wb = load_workbook(xlsx)
    cells = [c for row in wb["Summary"].iter_rows(values_only=True) for c in row if c is not None]
    assert "Passed: Valid" in cells
    assert "Completeness %" in cells
    assert "N/A - PID" in cells
    assert "Dataset checks (across rows)" in cells  # the checks across rows' section (run or 'not run')
    values = list(wb["Values"].iter_rows(values_only=True))
    assert ("Gender", "female", 1) in values
    everything = " ".join(
        str(c) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for c in row if c is not None
    )
    assert BAD_NHS not in everything
    assert "QZ99" not in everything


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.in_findings = False
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table" and a.get("id") == "findings-table":
            self.in_findings = True
        elif self.in_findings and tag == "tr":
            self.rows.append([])
        elif self.in_findings and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.in_findings = False
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def test_the_page_lists_every_failure_and_is_self_contained(tmp_path: Path) -> None:
    _, page, _, data = _run(tmp_path)
    text = page.read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(text)
    assert parser.rows[0] == COLUMNS
    got = {(int(r[0]), r[1], r[2], r[5], r[7]) for r in parser.rows[1:]}
    assert got == _expected(data)
    # self-contained: no script, no external resource, no URL at all
    assert "http:" not in text
    assert "https:" not in text
    assert not [t for t, a in parser.tags if t in ("script", "link", "img", "iframe")]
    assert not [a for _, a in parser.tags if "src" in a or "href" in a]
    for ident in ("chart-failures-by-field", "chart-validity-mix", "chart-failures-by-month"):
        assert f'<section id="{ident}">' in text
    assert text.count("<svg") == 3
    assert BAD_NHS not in text
    assert "QZ99" not in text


def test_json_dash_writes_the_report_to_stdout_and_the_summary_to_stderr(tmp_path: Path) -> None:
    src = _write(tmp_path / "la-file.csv", _rows())
    cld = Path(sys.executable).with_name("cld")
    proc = subprocess.run(
        [str(cld), "validate", str(src), "--release", "r2", "--la", "318", "--json", "-", "--no-progress"],
        capture_output=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["rows"] == len(_rows())
    assert {f["event_reference"] for f in data["findings"]} >= {"EV-GENDER", "EV-NHS", "EV-ISO", "EV-REQ"}
    assert b"la-file.csv" in proc.stderr  # the summary line
    assert b"Traceback" not in proc.stderr
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("where", ["missing-folder", "is-a-directory"])
def test_an_unwritable_report_path_exits_2_before_any_work(tmp_path: Path, where: str) -> None:
    src = _write(tmp_path / "la-file.csv", _rows())
    target = tmp_path / "no-such-folder" / "r.xlsx" if where == "missing-folder" else tmp_path
    result = runner.invoke(app, ["validate", str(src), "--la", "318", "--xlsx", str(target)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "cannot write the report" in " ".join(result.output.split())


def test_a_failure_while_writing_exits_2_and_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _write(tmp_path / "la-file.csv", _rows())

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cmd_validate.os, "replace", disk_full)
    out = tmp_path / "out"
    out.mkdir()
    result = runner.invoke(app, ["validate", str(src), "--la", "318", "--html", str(out / "r.html")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "no space left on" in " ".join(result.output.split()).lower()
    assert list(out.iterdir()) == []


def test_write_report_names_the_path_when_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(cmd_validate.ReportWriteError, match="cannot write"):
        cmd_validate.write_report(blocker / "r.html", b"<html></html>")


def test_cld_version_prints_the_installed_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith(f"cld {version('cld-mesh')} (spec data {SPEC.data_version})")


def test_reports_that_would_overwrite_each_other_or_the_input_exit_2(tmp_path: Path) -> None:
    src = _write(tmp_path / "la-file.csv", _rows())
    same = tmp_path / "r.out"
    result = runner.invoke(app, ["validate", str(src), "--xlsx", str(same), "--html", str(same)])
    assert result.exit_code == 2
    assert "same file" in result.output
    result = runner.invoke(app, ["validate", str(src), "--json", str(src)])
    assert result.exit_code == 2
    assert "overwrite the file being validated" in " ".join(result.output.split())
    assert src.read_text(encoding="utf-8").startswith(HEADERS[0])
