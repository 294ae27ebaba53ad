"""What ``cld validate`` adds to the record-level findings: checks across rows (issue 13 items 5, 6 and 8).

- ``dataset_checks``: the submission service's own dataset checks (``cld_submission.domain.file_checks``: duplicates by
  DHSC's keys, person conflicts, derived vs stated period, partial/top-up signs, rows outside the period by the
  scope rules), each with its rule and the rows concerned;
- ``warnings``: identity checks central processing depends on (``cld_validation.identity_checks``), never a
  failure;
- ``release_check``: whether the file looks like the other release (``cld_validation.release``), with a hint.

One object per run (:class:`AcrossRows`) fed every row; its JSON goes into the report's summary and its lines
into the terminal summary. Nothing here quotes a value from the file: rows, fields, rules and counts only.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from cld_schemas.spec import Release, Spec
from cld_submission.domain.checks import SubmissionProfile
from cld_submission.domain.file_checks import FileChecks, previous_profile
from cld_validation.identity_checks import FrameIdentityChecker
from cld_validation.release import ReleaseLabels

SHOW_CHECKS = 12
SHOW_WARNINGS = 10


class PreviousReportError(ValueError):
    """The ``--previous`` report cannot be used (the message says why; it never quotes the file)."""


def load_previous(path: Path) -> SubmissionProfile:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PreviousReportError(f"cannot read the previous report {path.name}: {type(exc).__name__}") from None
    try:
        profile = previous_profile(data) if isinstance(data, dict) else None
    except ValueError:
        profile = None
    if profile is None:
        raise PreviousReportError(
            f"{path.name} is not a `cld validate --json` report with a dataset profile (write one with --json)"
        )
    return profile


class AcrossRows:
    def __init__(self, spec: Spec, *, la_code: str | None, previous: SubmissionProfile | None = None) -> None:
        self.files = FileChecks(import_date=date.today(), la_code=la_code, previous=previous)
        self.identity = FrameIdentityChecker(spec)
        self.labels = ReleaseLabels(spec)

    def add_frame(self, offset: int, frame: pl.DataFrame, findings: pl.DataFrame) -> None:
        """One frame of ``report.validate_stream`` (``on_frame``): rows ``offset + 1`` on, with their findings."""
        per_row: dict[int, list[tuple[str, str, str]]] = {}
        for row, header, rule, validity in findings.select("row", "header", "rule", "validity").iter_rows():
            per_row.setdefault(row, []).append((header, rule, validity))
        self.identity.add_frame(offset, frame)
        self.labels.add_frame(frame)
        for i, rec in enumerate(frame.iter_rows(named=True)):  # the submission's dataset checks read records
            record = {k: v for k, v in rec.items() if v is not None}
            self.files.add(offset + i + 1, record, per_row.get(i, ()))

    def to_json(self, checked: Release) -> dict[str, Any]:
        """``checked``: the release the file was checked against (for the hint)."""
        out = self.files.finish().to_json()
        out.update(self.identity.to_json())
        out["release_check"] = self.labels.to_json(checked)
        return out


def print_across_rows(console: Console, data: dict[str, Any]) -> None:
    """The terminal lines for the checks across rows, the identity warnings and the release hint."""
    hint = data["release_check"]["hint"]
    if hint:
        console.print(f"[yellow]hint:[/] {hint}", highlight=False)
    checks = [c for c in data["dataset_checks"] if c["severity"] != "info" or c["count"]]
    if checks:
        t = Table(title="Checks across rows (as the submission service runs them before sending)")
        for col in ("Severity", "Check", "Count", "Rule", "Rows"):
            t.add_column(col, justify="right" if col == "Count" else "left")
        colour = {"error": "red", "warning": "yellow", "info": "cyan"}
        for c in checks[:SHOW_CHECKS]:
            t.add_row(
                f"[{colour.get(c['severity'], 'white')}]{c['severity']}[/]",
                c["id"],
                f"{c['count']:,}",
                c["rule"],
                ", ".join(c["examples"][:5]),
            )
        console.print(t)
        for c in checks[:SHOW_CHECKS]:
            if c["severity"] != "info":
                console.print(f"  [bold]{c['id']}[/]: {c['explanation']}", highlight=False)
    by_rule = data["warnings_by_rule"]
    if by_rule:
        console.print("[yellow]Identity warnings[/] (central tracing and linking depend on these; not failures):")
        for rid, info in by_rule.items():
            line = f"  [bold]{rid}[/] {info['name']}: {info['count']:,} - {info['explanation']}"
            console.print(line, highlight=False)
        for w in data["warnings"][:SHOW_WARNINGS]:
            console.print(f"  row {w['row']}: {w['field']} - {w['message']} [{w['rule']}]", highlight=False)
    if data["nhs_numbers_in_test_range"]:
        console.print(
            f"{data['nhs_numbers_in_test_range']:,} NHS numbers are in the 999 test range (synthetic data): "
            "recognised as test numbers, not warned as out of range."
        )
