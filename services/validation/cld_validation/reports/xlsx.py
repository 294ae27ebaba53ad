"""The DQ report as an Excel workbook (openpyxl, write-only so findings stream to disk-backed sheets).

Sheets: ``Summary`` (the counts, failures by field and rule, dataset checks, the DQ profile per field and event
type), ``Findings`` (one line per failed field: Row as Excel shows it, Event Reference, Field, Status, Validity,
Rule, Message, Fix; autofilter, frozen header) and ``Values`` (invalid and unchecked values of non-personal coded
fields with counts). Cells from the LA's file are written as text, never as formulas.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any, Final

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from cld_schemas.dqreport import PID
from cld_schemas.spec import FieldStatus, Validity
from cld_validation.reports import (
    DATASET_CHECK_COLUMNS,
    FINDING_COLUMNS,
    WARNING_COLUMNS,
    LocatedFinding,
    dataset_check_rows,
    warning_rows,
)

EXCEL_MAX_ROWS: Final = 1_048_576
_MAX_CELL: Final = 32_767
_BOLD: Final = Font(bold=True)
_TITLE: Final = Font(bold=True, size=14)
_HEAD_FILL: Final = PatternFill("solid", fgColor="DDEBF7")
_FORMULA_START: Final = ("=", "+", "-", "@")

DatasetChecks = Sequence[Mapping[str, Any]] | None
"""The dataset checks (duplicates, person conflicts, period) if not in the report's ``dataset_checks``: each a
mapping with ``id``, ``severity``, ``count``, ``rule``, ``examples``, ``explanation`` (the shape ``cld validate``
writes); ``None`` and no ``dataset_checks`` in the report says they were not run."""


class WorkbookReport:
    """Build with the source's name, ``add`` each finding as it is found, then ``finish`` for the bytes."""

    def __init__(self, source_name: str) -> None:
        self.source_name = source_name
        self.wb = Workbook(write_only=True)
        self.summary: WriteOnlyWorksheet = self.wb.create_sheet("Summary")
        self.findings: WriteOnlyWorksheet = self.wb.create_sheet("Findings")
        self.values: WriteOnlyWorksheet = self.wb.create_sheet("Values")
        widths = (8, 22, 30, 26, 26, 18, 60, 70)
        for i, w in enumerate(widths, start=1):
            self.findings.column_dimensions[get_column_letter(i)].width = w
        self.findings.freeze_panes = "A2"
        self.findings.append([self._head(self.findings, c) for c in FINDING_COLUMNS])
        self.written = 0
        self.left_out = 0

    @staticmethod
    def _head(ws: WriteOnlyWorksheet, text: str) -> WriteOnlyCell:
        cell = WriteOnlyCell(ws, value=text)
        cell.font = _BOLD
        cell.fill = _HEAD_FILL
        return cell

    def _text(self, ws: WriteOnlyWorksheet, value: str | None) -> WriteOnlyCell | None:
        if value is None:
            return None
        clean = ILLEGAL_CHARACTERS_RE.sub("?", value)[:_MAX_CELL]
        cell = WriteOnlyCell(ws, value=clean)
        cell.data_type = "s"  # text, never a formula, whatever the LA's cell starts with
        return cell

    def add(self, f: LocatedFinding) -> None:
        if self.written >= EXCEL_MAX_ROWS - 1:
            self.left_out += 1
            return
        ws = self.findings
        self.findings.append(
            [
                f.excel_row,
                self._text(ws, f.event_reference),
                f.field,
                f.status,
                f.validity,
                f.rule,
                self._text(ws, f.message),
                self._text(ws, f.fix),
            ]
        )
        self.written += 1

    def close(self) -> None:
        """Release the write-only sheets' temporary files (after ``finish``, or instead of it)."""
        self.wb.close()

    def finish(self, report: Mapping[str, Any], *, release: str, dataset_checks: DatasetChecks = None) -> bytes:
        self.findings.auto_filter.ref = f"A1:{get_column_letter(len(FINDING_COLUMNS))}{self.written + 1}"
        self._write_summary(report, release, dataset_checks)
        self._write_values(report)
        buf = io.BytesIO()
        self.wb.save(buf)
        return buf.getvalue()

    def _write_summary(self, report: Mapping[str, Any], release: str, dataset_checks: DatasetChecks) -> None:
        ws = self.summary
        ws.column_dimensions["A"].width = 34
        ws.column_dimensions["B"].width = 24
        t = WriteOnlyCell(ws, value="CLD data quality report")
        t.font = _TITLE
        ws.append([t])
        ws.append(["File", self._text(ws, self.source_name)])
        ws.append(["Release checked against", release])
        for label, key in (
            ("Rows", "rows"),
            ("Rows with failures", "rows_with_failures"),
            ("Rows passed", "rows_passed"),
            ("Failed fields", "failures"),
        ):
            ws.append([label, report.get(key, 0)])
        if self.left_out:
            ws.append(
                [
                    "Findings not in the Findings sheet",
                    self.left_out,
                    "Excel holds at most 1,048,576 rows: the JSON report (--json) has every finding.",
                ]
            )
        for label, key in (("Columns not in the file", "missing_columns"), ("Unknown columns", "unknown_columns")):
            if report.get(key):
                ws.append([label, self._text(ws, ", ".join(report[key]))])
        ws.append([])
        self._section(ws, "Failures by field and rule", ("Field", "Validity", "Rule", "Count"))
        for item in report.get("failures_by_field_and_rule", []):
            ws.append([item["field"], item["validity"], item["rule"], item["count"]])
        ws.append([])
        self._section(ws, "Dataset checks (across rows)", DATASET_CHECK_COLUMNS)
        checks = dataset_check_rows(report, dataset_checks)
        if checks is None:
            ws.append(["Not run by this version of cld validate."])
        elif not checks:
            ws.append(["No dataset check found anything."])
        else:
            for sev, check, count, rule, rows, expl in checks:
                ws.append(
                    [
                        sev,
                        self._text(ws, check),
                        count,
                        self._text(ws, rule),
                        self._text(ws, rows),
                        self._text(ws, expl),
                    ]
                )
        warnings = warning_rows(report)
        if warnings:
            ws.append([])
            self._section(ws, "Identity warnings (not failures)", WARNING_COLUMNS)
            for row, fld, rule, message in warnings[: EXCEL_MAX_ROWS // 4]:
                ws.append([row, self._text(ws, fld), self._text(ws, rule), self._text(ws, message)])
        ws.append([])
        profile = report.get("profile")
        if not profile:
            return
        statuses = [s.value for s in FieldStatus]
        validities = [v.value for v in Validity]
        self._section(
            ws,
            "DQ profile: per field and event type",
            ("Field", "Event type", "Rows", *statuses, *validities, "Completeness %", "Unchecked", "Invalid values"),
        )
        for item in profile["fields"]:
            values = item.get("invalid_and_unchecked_values")
            shown = PID if values == PID else _values_text(values)
            for event, cell in item["by_event_type"].items():
                ws.append(
                    [
                        item["field"],
                        self._text(ws, event),
                        cell["rows"],
                        *(cell["status"][s] for s in statuses),
                        *(cell["validity"][v] for v in validities),
                        cell["completeness_percent"],
                        cell["unchecked"],
                        self._text(ws, shown),
                    ]
                )

    def _section(self, ws: WriteOnlyWorksheet, title: str, columns: Sequence[str]) -> None:
        t = WriteOnlyCell(ws, value=title)
        t.font = _TITLE
        ws.append([t])
        ws.append([self._head(ws, c) for c in columns])

    def _write_values(self, report: Mapping[str, Any]) -> None:
        ws = self.values
        ws.freeze_panes = "A2"
        ws.column_dimensions["A"].width = 32
        ws.column_dimensions["B"].width = 48
        ws.append([self._head(ws, c) for c in ("Field", "Value", "Count")])
        n = 0
        for item in (report.get("profile") or {}).get("fields", []):
            values = item.get("invalid_and_unchecked_values")
            if values == PID:
                ws.append([item["field"], PID, None])
                n += 1
            elif isinstance(values, dict):
                for value, count in values.items():
                    ws.append([item["field"], self._text(ws, value), count])
                    n += 1
        ws.auto_filter.ref = f"A1:C{n + 1}"


def _values_text(values: Any, limit: int = 10) -> str:
    if not isinstance(values, dict) or not values:
        return ""
    items = list(values.items())
    text = "; ".join(f"{v} ({n})" for v, n in items[:limit])
    return text + (f"; ... {len(items) - limit} more (Values sheet)" if len(items) > limit else "")
