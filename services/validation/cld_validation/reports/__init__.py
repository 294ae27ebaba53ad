"""The analyst's DQ report, rendered: an Excel workbook (``xlsx``) and a self-contained HTML page (``html``).

Both render the JSON summary of ``cld_validation.report`` (profile included) plus the findings, located as an
analyst finds them: ``Row`` as Excel shows it (the header is row 1, so data row n is Excel row n + 1 plus any
blank lines skipped before it) and the
row's Event Reference. Renderers return bytes; the caller decides where they go.

The located finding, the table shapes and the HTML page are shared with the submission service's report page,
so they live in ``cld_schemas.dqreport`` (services never import each other) and are re-exported here.
"""

from __future__ import annotations

from cld_schemas.dqreport import (
    DATASET_CHECK_COLUMNS,
    FINDING_COLUMNS,
    WARNING_COLUMNS,
    LocatedFinding,
    dataset_check_rows,
    excel_row,
    warning_rows,
)

__all__ = [
    "DATASET_CHECK_COLUMNS",
    "FINDING_COLUMNS",
    "WARNING_COLUMNS",
    "LocatedFinding",
    "dataset_check_rows",
    "excel_row",
    "warning_rows",
]
