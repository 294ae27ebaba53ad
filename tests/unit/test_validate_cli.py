"""`cld validate` as an analyst meets it: exit codes, the JSON report's shape, and bad input without tracebacks."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cld_cli.main import app
from cld_schemas.spec import Release, load_spec
from cld_synth.generator import generate_rows
from tests.support.builders import a_service_row

SPEC = load_spec()
HEADERS = [f.header for f in SPEC.file_fields]
runner = CliRunner()


def write_rows(path: Path, rows: list[dict[str, str | None]], *, headers: list[str] | None = None) -> Path:
    headers = headers or HEADERS
    by_header = {f.header: f.name for f in SPEC.fields}
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(headers)
        for row in rows:
            w.writerow([row.get(by_header[h]) or "" for h in headers])
    return path


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_a_clean_generated_file_exits_0_and_the_report_has_the_documented_shape(tmp_path: Path) -> None:
    rows = [row for row, _ in generate_rows(people=40, seed=3, period_end=date(2026, 9, 30), release=Release.R2)]
    report = tmp_path / "report.json"
    code, out = run(str(write_rows(tmp_path / "clean.csv", rows)), "--json", str(report), "--la", "318")
    assert code == 0, out
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["release"] == "r2"
    assert data["rows"] == len(rows)
    assert data["findings"] == []
    assert data["summary"]["rows_with_failures"] == 0


def test_failures_exit_1_with_findings_by_row_and_spec_header(tmp_path: Path) -> None:
    bad = a_service_row(Release.R2, nhs_number="9990000019", gender="male")
    good = a_service_row(Release.R2)
    report = tmp_path / "report.json"
    code, out = run(  # Release 2 rows in a 2024/25 period (Release 1 by default): the release is given
        str(write_rows(tmp_path / "f.csv", [good, bad])), "--json", str(report), "--la", "318", "--release", "r2"
    )
    assert code == 1
    data = json.loads(report.read_text(encoding="utf-8"))
    found = {(f["row"], f["field"], f["validity"], f["rule"]) for f in data["findings"]}
    assert found == {(2, "NHS Number", "Failed: Invalid", "CLD021"), (2, "Gender", "Failed: Invalid", "CLD004")}
    assert data["summary"]["failures_by_field"] == {"NHS Number": 1, "Gender": 1}
    assert "9990000019" not in report.read_text(encoding="utf-8")
    assert "9990000019" not in out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (bytes(range(256)) * 40, "not a text file"),
        # Semicolons and Windows-1252 are read (issue 13); a file that is still no CLD file is refused as such.
        (b"Reporting Period Start Date;NHS Number;Gender\n01/04/2025;9990000018;Male\n", "not a CLD file"),
        (b"NHS Number,Gender\n9990000018,Male\n", "not a CLD file"),
        ("é,\xff".encode("latin-1"), "not a CLD file"),
    ],
    ids=["empty", "binary", "semicolons", "too-few-columns", "latin-1"],
)
def test_unusable_files_exit_2_with_a_clear_message(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    report = tmp_path / "report.json"
    code, out = run(str(path), "--json", str(report))
    assert code == 2
    assert expected in " ".join(out.split())
    assert not report.exists()  # no half-written report


def test_missing_required_columns_exit_2_naming_them(tmp_path: Path) -> None:
    headers = [h for h in HEADERS if h not in ("NHS Number", "Date of Birth")]
    code, out = run(str(write_rows(tmp_path / "m.csv", [a_service_row(Release.R2)], headers=headers)))
    assert code == 2
    flat = " ".join(out.split())
    assert "required columns are missing" in flat
    assert "NHS Number" in flat
    assert "Date of Birth" in flat


def test_a_ten_megabyte_field_is_a_per_row_finding_not_a_crash(tmp_path: Path) -> None:
    big = a_service_row(Release.R2, event_description="Z" * (10 * 1024 * 1024))
    report = tmp_path / "report.json"
    code, out = run(str(write_rows(tmp_path / "big.csv", [big])), "--json", str(report), "--la", "318", "-r", "r2")
    assert code == 1, out
    data = json.loads(report.read_text(encoding="utf-8"))
    assert [(f["field"], f["rule"]) for f in data["findings"]] == [("Event Description", "CLD053")]


def test_bad_code_list_override_exits_2(tmp_path: Path) -> None:
    lists = tmp_path / "lists.csv"
    lists.write_text("field,release,value\nNo Such Field,r2,X\n", encoding="utf-8")
    rows_file = write_rows(tmp_path / "ok.csv", [a_service_row(Release.R2)])
    code, out = run(str(rows_file), "--codelists", str(lists))
    assert code == 2
    assert "unknown field" in out


def test_the_installed_command_never_prints_a_traceback_on_a_missing_file(tmp_path: Path) -> None:
    cld = Path(sys.executable).with_name("cld")
    proc = subprocess.run(
        [str(cld), "validate", str(tmp_path / "nope.csv")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 2
    assert "no such file" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
