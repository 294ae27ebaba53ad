"""The analyst's DQ report, rendered: an Excel workbook (``xlsx``) and a self-contained HTML page (``html``).

Both render the JSON summary of ``cld_validation.report`` (profile included) plus the findings, located as an
analyst finds them: ``Row`` as Excel shows it (the header is row 1, so data row n is Excel row n + 1) and the
row's Event Reference. Renderers return bytes; the caller decides where they go.
"""

from __future__ import annotations

from dataclasses import dataclass

from cld_validation.rules import FieldFinding


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
    def of(cls, data_row: int, event_reference: str | None, fnd: FieldFinding) -> LocatedFinding:
        return cls(
            excel_row=excel_row(data_row),
            event_reference=event_reference,
            field=fnd.header,
            status=fnd.status.value,
            validity=fnd.validity.value,
            rule=fnd.rule,
            message=fnd.message,
            fix=fnd.fix,
        )


def excel_row(data_row: int) -> int:
    """The row number Excel shows for 1-based data row ``data_row`` (the header is Excel row 1)."""
    return data_row + 1


FINDING_COLUMNS = ("Row", "Event Reference", "Field", "Status", "Validity", "Rule", "Message", "Fix")
