"""The reference file path: an LA file validated row by row by ``rules.Validator`` (the per-row engine).

Not a production path since issue 11 (``report.validate_stream`` runs the columnar engine): kept only as the oracle
the columnar engine's file path is held to (``tests/unit/test_columnar_engine.py``, ``tests/golden/build.py``).
Production code must not import it (an import-linter contract says so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TextIO

from cld_schemas.spec import Release, Spec, load_spec
from cld_validation.profile import Profile
from cld_validation.release import latest_release, release_by_period
from cld_validation.report import FileSummary, FindingSink, LocatedSink, RecordHook, open_file
from cld_validation.rules import Validator

_CODE_RULES = frozenset({"CLD002", "CLD003", "CLD004"})


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
            on_record(n, rec, result.findings)
        if on_row is not None and n % 1000 == 0:
            on_row(n)
    summary.short_rows, summary.long_rows = rows.short_rows, rows.long_rows
    summary.ragged_lines = tuple(rows.ragged_lines)
    summary.excel_row_offsets = tuple(rows.line_offsets)
    return summary
