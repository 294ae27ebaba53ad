"""Validating a whole LA file: stream rows through the validator and summarise in the DQ report's terms.

Pure over already-open streams (the CLI owns files, terminals and exit codes). Memory does not grow with the
number of rows: findings are handed to a sink as they are found; only counters are kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from cld_schemas.csvfile import CLDFileError, CLDHeader, CLDRows, iter_records
from cld_schemas.spec import FieldStatus, Release, Spec, load_spec
from cld_validation.profile import Profile
from cld_validation.release import latest_release, release_by_period
from cld_validation.rules import FieldFinding, RowResult, Validator


@dataclass
class FileSummary:
    release: Release
    release_basis: str = "given"
    """How the release was chosen: ``given`` (--release), else ``release.ReleaseBasis`` of the first row."""
    rows: int = 0
    rows_with_failures: int = 0
    failures: int = 0
    by_field: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)
    by_field_rule: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    by_validity: Counter[str] = field(default_factory=Counter)
    unchecked: Counter[str] = field(default_factory=Counter)
    missing_columns: tuple[str, ...] = ()
    unknown_columns: tuple[str, ...] = ()
    short_rows: int = 0
    long_rows: int = 0
    ragged_lines: tuple[int, ...] = ()
    excel_row_offsets: tuple[tuple[int, int], ...] = ()
    """Blank lines skipped before data rows (``csvfile.excel_row``): data row -> the row Excel shows."""
    profile: Profile | None = None
    """The DQ profile (status x validity per field and event type, completeness, invalid values)."""

    def to_json(self, spec: Spec) -> dict[str, Any]:
        headers = {f.name: f.header for f in spec.fields}
        rules = {r.id: r for r in spec.rules}
        return {
            "release": self.release.value,
            "release_basis": self.release_basis,
            "rows": self.rows,
            "excel_row_offsets": [list(o) for o in self.excel_row_offsets],
            "rows_with_failures": self.rows_with_failures,
            "rows_passed": self.rows - self.rows_with_failures,
            "failures": self.failures,
            "failures_by_validity": dict(self.by_validity.most_common()),
            "failures_by_field": dict(self.by_field.most_common()),
            "failures_by_rule": {
                rid: {
                    "count": n,
                    "explanation": rules[rid].explanation if rid in rules else _status_rule_text(spec, rid),
                }
                for rid, n in self.by_rule.most_common()
            },
            "failures_by_field_and_rule": [
                {"field": f, "rule": r, "validity": v, "count": n} for (f, r, v), n in self.by_field_rule.most_common()
            ],
            "unchecked_values": {
                headers[name]: {
                    "count": n,
                    "reason": f"the {self.release.value} code list for this field is not fully known; "
                    "load the official list with --codelists to check these values",
                }
                for name, n in self.unchecked.most_common()
            },
            "rows_with_too_few_cells": self.short_rows,
            "rows_with_too_many_cells": self.long_rows,
            "first_ragged_lines": list(self.ragged_lines),
            "missing_columns": list(self.missing_columns),
            "unknown_columns": list(self.unknown_columns),
            "profile": self.profile.to_json() if self.profile is not None else None,
        }


def _status_rule_text(spec: Spec, rule_id: str) -> str:
    for f in spec.fields:
        for c in f.status:
            if c.id == rule_id:
                return f"{f.header} is Mandatory: {c.why} ({c.cites})"
    return ""


FindingSink = Callable[[int, FieldFinding], None]
RecordHook = Callable[[int, dict[str, str | None], RowResult], None]
"""Sees every row (its number as the sink numbers it, the record, its result): the checks across rows."""
_CODE_RULES = frozenset({"CLD002", "CLD003", "CLD004"})
LocatedSink = Callable[[int, int, str | None, FieldFinding], None]
"""(1-based data row, the row as Excel shows it (its physical line; header = 1), the row's Event Reference or None,
finding): what an analyst needs to find the cell."""


def required_columns(spec: Spec) -> tuple[str, ...]:
    """Headers of fields that are Mandatory on every row and are columns of the file: without them a file
    cannot be a CLD submission."""
    return tuple(
        f.header
        for f in spec.fields
        if f.in_file is True and len(f.status) == 1 and f.status[0].status is FieldStatus.MANDATORY
    )


def open_file(
    stream: TextIO | Iterable[str], *, spec: Spec, sparse: bool = False, delimiter: str = ","
) -> tuple[CLDHeader, CLDRows]:
    header, rows = iter_records(stream, spec=spec, sparse=sparse, delimiter=delimiter)
    headers_present = {f.header for f in spec.fields} - set(header.missing_fields)
    missing_required = [h for h in required_columns(spec) if h not in headers_present]
    if missing_required:
        raise CLDFileError("required columns are missing: " + ", ".join(missing_required))
    return header, rows


def validate_stream(
    stream: TextIO | Iterable[str],
    *,
    delimiter: str = ",",
    release: Release | None,
    spec: Spec | None = None,
    la_code: str | None = None,
    sink: FindingSink | None = None,
    on_row: Callable[[int], None] | None = None,
    on_record: RecordHook | None = None,
    located_sink: LocatedSink | None = None,
) -> FileSummary:
    """Validate every row of an LA file. ``sink(row_number, finding)`` gets each failure (1-based data row);
    ``located_sink(row_number, excel_row, event_reference, finding)`` too, with the row as Excel shows it and the
    row's Event Reference.

    ``release`` None: the release in force for the file's reporting period (the spec's cut-over data, read from
    the first row: a file states one period; ``release.release_by_period``).

    Raises CLDFileError when the file cannot be used at all.
    """
    spec = spec or load_spec()
    header, rows = open_file(stream, spec=spec, sparse=True, delimiter=delimiter)
    present = {c for c in header.columns if c is not None}
    absent = frozenset(f.name for f in spec.fields if f.name not in present and f.in_file is not True)
    if la_code is not None:
        absent = absent - {"la_code"}
    validator = Validator(spec, release, absent=absent) if release is not None else None
    summary = FileSummary(
        release=release or latest_release(spec),
        missing_columns=header.missing_fields,
        unknown_columns=header.unknown_columns,
    )
    profile: Profile | None = None
    coded: frozenset[str] = frozenset()
    for n, rec in enumerate(rows, start=1):
        if la_code is not None and not rec.get("la_code"):
            rec["la_code"] = la_code
        if validator is None:  # no --release: the release in force for the file's period (its first row's)
            choice = release_by_period(rec, spec)
            summary.release, summary.release_basis = choice.release, choice.basis.value
            validator = Validator(spec, choice.release, absent=absent)
        if profile is None:  # the profile follows the validator's fields and Event Type codes
            event_code = validator.codes.get("event_type")
            profile = Profile(validator.fields, frozenset(event_code.exact) if event_code else frozenset())
            summary.profile = profile
            coded = frozenset(validator.codes)
        result = validator.validate(rec)
        summary.rows = n
        profile.add(
            profile.event_label(rec.get("event_type")),
            result.plan_statuses,
            rec,
            result.unchecked,
            [(f.name, f.validity) for f in result.findings] if result.findings else (),
        )
        if result.findings:
            summary.rows_with_failures += 1
            start = validator.parse_date(rec.get("event_start_date") or "-")
            profile.add_failed_row(
                start.strftime("%Y-%m") if not isinstance(start, str) else None, len(result.findings)
            )
            ref = rec.get("event_reference")
            for fnd in result.findings:
                if fnd.rule in _CODE_RULES and fnd.name in coded:
                    value = rec.get(fnd.name)
                    if value:
                        profile.add_value(fnd.name, value)
                if located_sink is not None:
                    located_sink(n, rows.line, ref, fnd)
                summary.failures += 1
                summary.by_field[fnd.header] += 1
                summary.by_rule[fnd.rule] += 1
                summary.by_validity[fnd.validity.value] += 1
                summary.by_field_rule[(fnd.header, fnd.rule, fnd.validity.value)] += 1
                if sink is not None:
                    sink(n, fnd)
        if result.unchecked:
            summary.unchecked.update(result.unchecked)
        if on_record is not None:
            on_record(n, rec, result)
        if on_row is not None and n % 1000 == 0:
            on_row(n)
    summary.short_rows, summary.long_rows = rows.short_rows, rows.long_rows
    summary.ragged_lines = tuple(rows.ragged_lines)
    summary.excel_row_offsets = tuple(rows.line_offsets)
    return summary
