"""The analyst's DQ report, shared: what ``cld validate --html`` and the submission service's report page
(``GET /v1/submissions/{id}/report``) both render, with one implementation (``html.render_html``).

It lives here, not in a service, because services never import each other (import-linter): the validation
service (and ``cld validate``) and the submission service both import ``cld_schemas``. Pure: plain data in,
bytes out; no I/O. The workbook renderer stays in ``cld_validation.reports.xlsx`` (only ``cld validate`` writes
workbooks).

Findings are located as an analyst finds them: ``Row`` as Excel shows it (the header is row 1, so data row n is
Excel row n + 1) and the row's Event Reference. Personal fields never show values (``PID``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from cld_schemas.spec import FieldStatus, Validity

PID: Final = "N/A - PID"
"""What a personal field shows instead of values (the central DQ report's wording)."""
ALL_EVENTS: Final = "All event types"
NO_START_MONTH: Final = "(no valid Event Start Date)"


class FieldFindingLike(Protocol):
    """What ``LocatedFinding.of`` reads of a finding (``cld_validation.rules.FieldFinding`` has it)."""

    @property
    def header(self) -> str: ...
    @property
    def status(self) -> FieldStatus: ...
    @property
    def validity(self) -> Validity: ...
    @property
    def rule(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def fix(self) -> str: ...


@dataclass(frozen=True, slots=True)
class LocatedFinding:
    """A finding with what an analyst searches for: the Excel row and the row's Event Reference."""

    excel_row: int
    event_reference: str | None
    field: str
    status: str
    validity: str
    rule: str
    message: str
    fix: str

    @classmethod
    def of(cls, excel_row: int, event_reference: str | None, fnd: FieldFindingLike) -> LocatedFinding:
        """``excel_row``: the row as Excel shows it (the row's physical line, header = 1: ``CLDRows.line``)."""
        return cls(
            excel_row=excel_row,
            event_reference=event_reference,
            field=fnd.header,
            status=fnd.status.value,
            validity=fnd.validity.value,
            rule=fnd.rule,
            message=fnd.message,
            fix=fnd.fix,
        )


def excel_row(data_row: int, offsets: Sequence[Sequence[int]] = ()) -> int:
    """The row number Excel shows for 1-based data row ``data_row`` (the header is Excel row 1; ``offsets``: the
    report's ``excel_row_offsets``, blank lines skipped before data rows; none in a file this product wrote)."""
    from cld_schemas.csvfile import excel_row as _excel_row

    return _excel_row(data_row, offsets)


FINDING_COLUMNS = ("Row", "Event Reference", "Field", "Status", "Validity", "Rule", "Message", "Fix")


DATASET_CHECK_COLUMNS = ("Severity", "Check", "Count", "Rule", "Rows", "Explanation")
WARNING_COLUMNS = ("Row", "Field", "Rule", "Message")


def dataset_check_rows(
    report: Mapping[str, Any], explicit: Sequence[Mapping[str, Any]] | None = None
) -> list[tuple[str, str, int | None, str, str, str]] | None:
    """The checks across rows as table rows, from ``explicit`` or the report's ``dataset_checks`` (the shape
    ``cld validate`` writes: id, severity, count, rule, examples, explanation); None when they were not run."""
    checks = explicit if explicit is not None else report.get("dataset_checks")
    if checks is None:
        return None
    out = []
    for c in checks:
        rows = c.get("examples", c.get("rows"))
        shown = ", ".join(str(r) for r in rows[:50]) if isinstance(rows, list | tuple) else str(rows or "")
        count = c.get("count")
        out.append(
            (
                str(c.get("severity", "")),
                str(c.get("id", c.get("check", ""))),
                count if isinstance(count, int) else None,
                str(c.get("rule", "")),
                shown,
                str(c.get("explanation", c.get("detail", ""))),
            )
        )
    return out


def warning_rows(report: Mapping[str, Any]) -> list[tuple[int | None, str, str, str]]:
    """Identity warnings (``warnings`` in the report: row = 1-based data row) with the row as Excel shows it."""
    out = []
    offsets = report.get("excel_row_offsets") or ()
    for w in report.get("warnings") or ():
        row = w.get("row")
        out.append(
            (
                excel_row(row, offsets) if isinstance(row, int) else None,
                str(w.get("field", "")),
                str(w.get("rule", "")),
                str(w.get("message", "")),
            )
        )
    return out
