"""The workbook and the page render the checks across rows and identity warnings when the report carries them
(the shape `cld validate` writes: dataset_checks, warnings), and say 'not run' when it does not."""

from __future__ import annotations

import io
from typing import Any

from openpyxl import load_workbook

from cld_validation.reports import excel_row
from cld_validation.reports.html import render_html
from cld_validation.reports.xlsx import WorkbookReport

BASE: dict[str, Any] = {"rows": 3, "rows_with_failures": 0, "rows_passed": 3, "failures": 0, "profile": None}
ACROSS: dict[str, Any] = {
    "dataset_checks": [
        {
            "id": "duplicate-event",
            "severity": "error",
            "count": 2,
            "rule": "R-DUP-1",
            "examples": ["4", "9"],
            "explanation": "Two rows share DHSC's duplicate keys.",
        }
    ],
    "warnings": [{"rule": "ID003", "row": 7, "field": "NHS Number", "message": "A placeholder NHS number."}],
}


def _workbook_cells(report: dict[str, Any]) -> list[Any]:
    data = WorkbookReport("f.csv").finish(report, release="r2")
    wb = load_workbook(io.BytesIO(data))
    return [c for row in wb["Summary"].iter_rows(values_only=True) for c in row if c is not None]


def test_the_workbook_shows_dataset_checks_and_warnings_from_the_report() -> None:
    cells = _workbook_cells({**BASE, **ACROSS})
    assert "duplicate-event" in cells
    assert "R-DUP-1" in cells
    assert "4, 9" in cells
    assert "Two rows share DHSC's duplicate keys." in cells
    assert excel_row(7) in cells  # the warning's data row 7, as Excel shows it
    assert "A placeholder NHS number." in cells


def test_the_workbook_says_when_the_checks_were_not_run() -> None:
    assert "Not run by this version of cld validate." in _workbook_cells(dict(BASE))
    assert "No dataset check found anything." in _workbook_cells({**BASE, "dataset_checks": []})


def test_the_page_shows_dataset_checks_and_warnings_from_the_report() -> None:
    page = render_html({**BASE, **ACROSS}, [], source_name="f.csv", release="r2").decode("utf-8")
    assert 'id="dataset-checks-table"' in page
    assert "duplicate-event" in page
    assert "Two rows share DHSC&#x27;s duplicate keys." in page
    assert 'id="warnings-table"' in page
    assert '<td class="n">8</td><td>NHS Number</td>' in page
    bare = render_html(dict(BASE), [], source_name="f.csv", release="r2").decode("utf-8")
    assert "Not run by this version of cld validate." in bare
