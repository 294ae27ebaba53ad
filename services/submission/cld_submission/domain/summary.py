"""The DQ summary of one submission: what an operator sees before approving (no record values). Pure data."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict

from .checks import CheckResult, Diff, FindingCount, LeftOut, SubmissionProfile


class DQSummary(BaseModel):
    """What an operator sees before approving: record-level failures, dataset checks, diff. No values."""

    model_config = ConfigDict(frozen=True)

    submission_id: str
    la_code: str
    period_start: date
    period_end: date
    rows: int
    file_sha256: str
    size_bytes: int
    rows_with_failures: int
    opt_out_rows: int
    record_findings: list[FindingCount]
    dataset_checks: list[CheckResult]
    errors: int
    warnings: int
    profile: SubmissionProfile
    diff: Diff | None
    previous_submission_id: str | None
    left_out: LeftOut | None = None
    """Held records of the LA not in the file (outside the period by the scope rules), by reason."""
    row_findings_kept: bool = False
    """True when each failed row's findings were kept with the submission (its DQ report page lists them);
    False for submissions assembled before they were kept (the page then shows the counts by field and rule)."""
