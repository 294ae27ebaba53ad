"""The DQ report page of one submission (``GET /v1/submissions/{id}/report``): the same page as
``cld validate --html`` (the shared renderer ``cld_schemas.dqreport.html``), built from what the submission holds.

- Findings: each failed field of each row of the submission's file as it was assembled (kept with the manifest:
  ``Repository.iter_row_findings``), with the row as Excel shows it (the header is row 1), its Event Reference,
  the field, status, validity, rule and message of the validation service's finding.
- Dataset checks: the submission's checks (held records left out of the period included), and a table of the
  left-out records by reason; the record-level failures counted by field and rule.
- The per-field profile and the failures by event start month are not kept for a submission; the page says so
  and points to ``cld validate --html`` on the file.

Pure: plain data in, bytes out. No value of a personal field can reach the page: the submission keeps no value,
only field names, rule ids, validities, messages (which never hold a value) and Event References (not personal:
R-FLD-23), all HTML-escaped by the renderer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Final

from cld_schemas.dqreport import LocatedFinding, excel_row
from cld_schemas.dqreport.html import MAX_FINDINGS_ON_PAGE, render_html, table

from .lifecycle import Submission
from .records import RowFindings
from .summary import DQSummary

NO_FIX: Final = "See the validation report of the file (cld validate --html) for how to fix this value."
"""For findings stored before the validation service sent a fix with each finding."""


def render_submission_report(sub: Submission, summary: DQSummary, failed_rows: Iterable[RowFindings]) -> bytes:
    """The HTML page of ``sub`` (self-contained: no script, no URL)."""
    findings: list[LocatedFinding] = []
    total = 0
    for r in failed_rows:
        for fld, rule, validity, status, message, fix in r.findings:
            total += 1
            if len(findings) < MAX_FINDINGS_ON_PAGE:
                findings.append(
                    LocatedFinding(
                        excel_row=excel_row(r.row),
                        event_reference=r.event_reference,
                        field=fld,
                        status=status,
                        validity=validity,
                        rule=rule,
                        message=message,
                        fix=fix or NO_FIX,
                    )
                )
    by_field: Counter[str] = Counter()
    for fc in summary.record_findings:
        by_field[fc.field] += fc.records
    failures = total if summary.row_findings_kept else sum(by_field.values())
    report = {
        "rows": summary.rows,
        "rows_with_failures": summary.rows_with_failures,
        "rows_passed": summary.rows - summary.rows_with_failures,
        "failures": failures,
        "failures_by_field": dict(by_field.most_common()),
    }
    extra = [
        (
            "Submission",
            "submission",
            table(
                "submission-table",
                ("Submission", "LA", "Period", "State", "Version", "Rows", "File SHA-256", "Errors", "Warnings"),
                [
                    (
                        sub.submission_id,
                        sub.la_code,
                        f"{sub.period_start:%d/%m/%Y} - {sub.period_end:%d/%m/%Y}",
                        sub.state.value,
                        sub.version,
                        summary.rows,
                        summary.file_sha256,
                        summary.errors,
                        summary.warnings,
                    )
                ],
            ),
        ),
        (
            "Record-level failures by field and rule",
            "record-findings",
            table(
                "record-findings-table",
                ("Field", "Rule", "Validity", "Records"),
                [(f.field, f.rule, f.validity, f.records) for f in summary.record_findings],
            )
            if summary.record_findings
            else '<p class="note">No record-level failure.</p>',
        ),
        ("Held records left out of the period", "left-out", _left_out(summary)),
    ]
    unavailable = {
        "chart-validity-mix": "The per-field profile is not kept for a submission: run cld validate --html on "
        "the submission's file (GET /v1/submissions/{id}/file) for it.",
        "chart-failures-by-month": "Failures by event start month are not kept for a submission: run cld "
        "validate --html on the submission's file for them.",
        "profile": "The per-field profile is not kept for a submission: run cld validate --html on the "
        "submission's file for it.",
    }
    if not summary.row_findings_kept:
        unavailable["findings"] = (
            "This submission was assembled before each row's failures were kept: the failures are counted by "
            "field and rule above. Request the period again for a list by row."
        )
    return render_html(
        report,
        findings,
        source_name=(
            f"Submission {sub.submission_id} · LA {sub.la_code} · {sub.period_start:%d/%m/%Y} - "
            f"{sub.period_end:%d/%m/%Y} · state: {sub.state.value}"
        ),
        release="the release in force for each record's reporting period",
        total_findings=failures,
        dataset_checks=[c.model_dump(mode="json") for c in summary.dataset_checks],
        title="CLD submission data quality report",
        extra_sections=extra,
        unavailable=unavailable,
    )


def _left_out(summary: DQSummary) -> str:
    lo = summary.left_out
    if lo is None:
        return '<p class="note">Not recorded for this submission (assembled before left-out records were kept).</p>'
    head = (
        f'<p class="note">{lo.held:,} records held for the LA, {lo.in_file:,} in the file, {lo.left_out:,} left '
        "out of the period by the scope rules.</p>"
    )
    if not lo.by_reason:
        return head
    return head + table(
        "left-out-table",
        ("Reason", "Rule", "Records", "Explanation", "Examples (Event References or record keys)"),
        [(g.reason, g.rule, g.count, g.explanation, ", ".join(g.examples)) for g in lo.by_reason],
    )
