"""`cld validate` and `cld preview` on a CSV whose quotes are broken (issue 10, finding 2): exit 2 naming the
physical line, no traceback, no value from the file, no half-written output; never a silently shorter file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cld_cli.main import app
from cld_schemas.spec import load_spec

SPEC = load_spec()
HEADERS = [f.header for f in SPEC.fields if f.in_file is not False]
NAMES = ["Ann", "Zqvoranth", "Cat", "Dan", "Eve", "Fay"]  # synthetic first names; row 2's must never be echoed
KEY_HEX = bytes(range(200, 232)).hex()


def six_rows() -> str:
    """A 6-row file with no quoted cell (so the only quote is the one a test puts in)."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=HEADERS, lineterminator="\n")
    w.writeheader()
    for i, name in enumerate(NAMES):
        w.writerow(
            {
                "LA Code": "318",
                "Reporting Period Start Date": "01/04/2025",
                "Reporting Period End Date": "31/03/2026",
                "NHS Number": "9990000018",
                "LA Person Unique Identifier": f"LAP-{i}",
                "First Name": name,
                "Date of Birth": "12/06/1948",
                "Gender": "Female",
                "Event Type": "Service",
                "Event Start Date": "01/05/2025",
            }
        )
    text = out.getvalue()
    assert '"' not in text
    return text


BROKEN = {
    # row 2 (physical line 3) opens a quote that is never closed: read loosely, the file is 2 rows
    "unterminated": (six_rows().replace(",Zqvoranth,", ',"Zqvoranth,', 1), "line 3: a double quote"),
    # a quoted cell holding a line break: one record over two physical lines
    "line-break": (six_rows().replace(",Zqvoranth,", ',"Zqv\noranth",', 1), "line 3: a quoted cell runs over"),
    # text after the closing quote
    "text-after-quote": (six_rows().replace(",Zqvoranth,", ',"Zqv"oranth,', 1), "line 3: text follows"),
}


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("case", list(BROKEN))
def test_validate_exits_2_with_the_line_number_and_writes_no_report(tmp_path: Path, case: str) -> None:
    text, says = BROKEN[case]
    src = tmp_path / "la.csv"
    src.write_text(text, encoding="utf-8", newline="")
    report = tmp_path / "report.json"
    result = invoke("validate", str(src), "--json", str(report))
    flat = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert says in flat
    assert "Zqv" not in flat
    assert not report.exists()


def test_validate_still_reads_the_intact_file(tmp_path: Path) -> None:
    src = tmp_path / "la.csv"
    src.write_text(six_rows(), encoding="utf-8", newline="")
    result = invoke("validate", str(src), "--release", "r2")
    assert result.exit_code in (0, 1), result.output  # rows are read and judged (findings are fine here)
    assert "6 rows" in result.output


@pytest.mark.parametrize("case", list(BROKEN))
def test_preview_exits_2_with_the_line_number_and_leaves_no_output(tmp_path: Path, case: str) -> None:
    text, says = BROKEN[case]
    src = tmp_path / "la.csv"
    src.write_text(text, encoding="utf-8", newline="")
    key = tmp_path / "pseudo.key"
    key.write_text(KEY_HEX, encoding="utf-8")
    out = tmp_path / "out"
    result = invoke("preview", str(src), "--key-file", str(key), "--out", str(out))
    flat = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert flat.startswith("error: input file:"), flat
    assert says in flat
    assert "Zqv" not in flat
    assert not out.exists() or list(out.iterdir()) == []
