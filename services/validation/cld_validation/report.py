"""Validating a whole LA file with the columnar engine and summarising it in the DQ report's terms.

Pure over already-open streams (the CLI owns files, terminals and exit codes). The file is read by ``csvfile``'s
strict parser into frames of ``batch_size`` rows (``columnar.iter_frames``); each frame is validated by the
compiled plan of its release (``columnar.plan_for``: compiled once per release and absent columns) and summarised
by group-bys: the counts, the DQ profile, the unchecked values. Python runs per *finding* only (its fix and the
report's line), never per row. Memory follows the batch size, not the number of rows: findings are handed to a
sink as they are found; only counters are kept.

The release: ``--release`` for every row; else a row whose own Reporting Period End Date is readable is checked
against the release in force for that date, and any other row against the file's release (that of the first row,
by ``release.release_by_period``: then its event dates, else the latest). The summary reports the file's release.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import polars as pl

from cld_schemas.csvfile import CLDFileError, CLDHeader, CLDRows, excel_row, iter_records
from cld_schemas.spec import FieldStatus, Release, Spec, Validity, load_spec
from cld_validation import columnar
from cld_validation.findings import FieldFinding
from cld_validation.profile import Profile
from cld_validation.release import ReleaseBasis, latest_release, release_by_period


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
RecordHook = Callable[[int, dict[str, str | None], Sequence[FieldFinding]], None]
"""Sees every row (its number as the sink numbers it, the sparse record, its findings): the reference's hook."""
FrameHook = Callable[[int, pl.DataFrame, pl.DataFrame], None]
"""Sees every frame: (rows before it, the prepared frame (one String column per spec field, blank = null, la_code
filled), its findings (``columnar.FINDINGS_SCHEMA``, ``row`` 0-based in the frame)): the checks across rows."""
_CODE_RULES: Final = ("CLD002", "CLD003", "CLD004")
DEFAULT_BATCH_ROWS: Final = 10_000
"""Rows per frame: memory follows it (the plan's intermediate columns), the fixed cost per frame is ~30 ms."""
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
    on_frame: FrameHook | None = None,
    located_sink: LocatedSink | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
) -> FileSummary:
    """Validate every row of an LA file. ``sink(row_number, finding)`` gets each failure (1-based data row);
    ``located_sink(row_number, excel_row, event_reference, finding)`` too, with the row as Excel shows it and the
    row's Event Reference; ``on_frame`` sees each frame with its findings.

    ``release`` None: per row, by its period (module docstring). Raises CLDFileError when the file cannot be used.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    spec = spec or load_spec()
    header, rows = open_file(stream, spec=spec, sparse=True, delimiter=delimiter)
    present = {c for c in header.columns if c is not None}
    absent = frozenset(f.name for f in spec.fields if f.name not in present and f.in_file is not True)
    if la_code is not None:
        absent = absent - {"la_code"}
    summary = FileSummary(
        release=release or latest_release(spec),
        missing_columns=header.missing_fields,
        unknown_columns=header.unknown_columns,
    )
    acc: _Accumulator | None = None
    names = columnar.plan_for(spec, summary.release, absent=absent).names
    order = {name: i for i, name in enumerate(c for c in header.columns if c is not None)}
    for frame in columnar.iter_frames(rows, names, batch_size):
        if acc is None:  # the file's release: given, else the first row's (the profile's event types follow it)
            if release is None:
                choice = release_by_period(_first_record(frame, la_code), spec)
                summary.release, summary.release_basis = choice.release, choice.basis.value
            acc = _Accumulator(summary, columnar.plan_for(spec, summary.release, absent=absent), order)
        offset = summary.rows
        checked = _validate(frame, spec, summary.release, release is None, absent, la_code)
        acc.add(checked)
        if sink is not None or located_sink is not None:
            _emit(checked, offset, rows, sink, located_sink)
        if on_frame is not None:
            on_frame(offset, checked.frame, checked.findings)
        summary.rows = offset + frame.height
        if on_row is not None:
            on_row(summary.rows)
    if acc is not None:
        acc.finish()
    summary.short_rows, summary.long_rows = rows.short_rows, rows.long_rows
    summary.ragged_lines = tuple(rows.ragged_lines)
    summary.excel_row_offsets = tuple(rows.line_offsets)
    return summary


def _first_record(frame: pl.DataFrame, la_code: str | None) -> dict[str, str | None]:
    rec = {k: v for k, v in frame.row(0, named=True).items() if v is not None}
    if la_code is not None and not rec.get("la_code"):
        rec["la_code"] = la_code
    return rec


@dataclass(frozen=True, slots=True)
class _Checked:
    """One frame validated: prepared cells, per-row detail, findings (with ``fix``), unchecked counts."""

    frame: pl.DataFrame
    detail: pl.DataFrame
    findings: pl.DataFrame
    unchecked: dict[str, int]


def _row_releases(frame: pl.DataFrame, spec: Spec, file_release: Release) -> pl.Series:
    """Per row: the release in force for its own Reporting Period End Date when readable, else the file's.
    Judged once per distinct date of the frame."""
    col = "reporting_period_end_date"
    if col not in frame.columns:
        return pl.Series("release", [file_release.value] * frame.height, pl.String)
    distinct = frame.get_column(col).drop_nulls().unique().to_list()
    chosen: list[str] = []
    for value in distinct:
        choice = release_by_period({col: value}, spec)
        rel = choice.release if choice.basis is ReleaseBasis.REPORTING_PERIOD_END else file_release
        chosen.append(rel.value)
    values = frame.get_column(col)
    if not distinct:
        return pl.Series("release", [file_release.value] * frame.height, pl.String)
    return values.replace_strict(distinct, chosen, default=file_release.value, return_dtype=pl.String)


def _validate(
    frame: pl.DataFrame,
    spec: Spec,
    file_release: Release,
    per_row: bool,
    absent: frozenset[str],
    la_code: str | None,
) -> _Checked:
    """Validate a frame, rows of each release by that release's plan (one part per release present)."""
    if per_row:
        releases = _row_releases(frame, spec, file_release)
        present = releases.unique(maintain_order=True).to_list()
    else:
        present = [file_release.value]
    if len(present) == 1:
        return _part(frame, columnar.plan_for(spec, Release(present[0]), absent=absent), la_code)
    parts: list[_Checked] = []
    index: list[pl.Series] = []
    for rel in present:
        mask = releases == rel
        positions = pl.Series("pos", range(frame.height), pl.Int64).filter(mask)
        part = _part(frame.filter(mask), columnar.plan_for(spec, Release(rel), absent=absent), la_code)
        gathered = part.findings.with_columns(positions.gather(part.findings.get_column("row")).alias("row"))
        parts.append(_Checked(part.frame, part.detail, gathered, part.unchecked))
        index.append(positions)
    pos = pl.concat(index)
    back = pos.arg_sort()
    unchecked: dict[str, int] = {}
    for part in parts:
        for k, v in part.unchecked.items():
            unchecked[k] = unchecked.get(k, 0) + v
    return _Checked(
        frame=pl.concat([p.frame for p in parts]).select(pl.all().gather(back)),
        detail=pl.concat([p.detail for p in parts], how="diagonal").select(pl.all().gather(back)),
        findings=pl.concat([p.findings for p in parts]).sort("row", maintain_order=True),
        unchecked=unchecked,
    )


def _part(frame: pl.DataFrame, plan: columnar.Plan, la_code: str | None) -> _Checked:
    result = columnar.validate_frame(frame, plan, la_code=la_code, detail=True)
    if result.frame is None or result.detail is None:  # pragma: no cover - detail=True returns both
        raise AssertionError("validate_frame(detail=True) returned no detail")
    events = result.frame.get_column("event_type") if "event_type" in result.frame.columns else None
    fixes = columnar.fixes_of(result.findings, plan, events)
    findings = result.findings.with_columns(pl.Series("fix", fixes, pl.String))
    return _Checked(result.frame, result.detail, findings, result.unchecked)


_STATUS = {s.value: s for s in FieldStatus}
_VALIDITY = {v.value: v for v in Validity}


def _emit(
    checked: _Checked,
    offset: int,
    rows: CLDRows,
    sink: FindingSink | None,
    located_sink: LocatedSink | None,
) -> None:
    """Hand each finding to the sinks, in row order (Python per finding: each is a line of the report)."""
    f = checked.findings
    if f.height == 0:
        return
    refs = checked.frame.get_column("event_reference").gather(f.get_column("row")).to_list()
    offsets = rows.line_offsets
    cols = f.select("row", "field", "header", "status", "validity", "rule", "message", "fix").iter_rows()
    for (row, name, header, status, validity, rule, message, fix), ref in zip(cols, refs, strict=True):
        n = offset + row + 1
        fnd = FieldFinding(name, header, _STATUS[status], _VALIDITY[validity], rule, message, fix)
        if located_sink is not None:
            located_sink(n, excel_row(n, offsets), ref, fnd)
        if sink is not None:
            sink(n, fnd)


class _Accumulator:
    """The file's counts and DQ profile, a frame at a time, by group-bys (first-seen order kept, so ties in
    ``most_common`` break as they did when counted row by row)."""

    def __init__(self, summary: FileSummary, plan: columnar.Plan, order: dict[str, int]) -> None:
        self.summary = summary
        self.plan = plan
        self.order = order
        fields = [plan.by_name[n] for n in plan.names]
        event = plan.judges.get("event_type")
        self.defined_events = list(event.exact) if event is not None else []
        self.profile = summary.profile = Profile(fields, frozenset(self.defined_events))
        self.index = {n: i for i, n in enumerate(plan.names)}
        self.statuses: list[list[FieldStatus]] = [[c.status for c in f.status] for f in fields]
        self.coded = frozenset(plan.judges)
        self._interned: dict[tuple[FieldStatus, ...], tuple[FieldStatus, ...]] = {}
        self._months: dict[int, str] = {}

    def _labels(self, frame: pl.DataFrame) -> pl.Series:
        from cld_validation.profile import BLANK_EVENT, OTHER_EVENT

        ev = pl.col("event_type")
        return frame.select(
            pl.when(ev.is_null())
            .then(pl.lit(BLANK_EVENT))
            .when(ev.is_in(self.defined_events))
            .then(ev)
            .otherwise(pl.lit(OTHER_EVENT))
            .alias("__event__")
        ).to_series()

    def add(self, checked: _Checked) -> None:
        s = self.summary
        f = checked.findings
        labels = self._labels(checked.frame)
        self._profile_rows(checked, labels)
        self._unchecked(checked, labels, f)
        if f.height == 0:
            return
        s.failures += f.height
        s.rows_with_failures += f.get_column("row").n_unique()
        for keys, counter in (
            (["header"], s.by_field),
            (["rule"], s.by_rule),
            (["validity"], s.by_validity),
        ):
            for key, n in f.group_by(keys, maintain_order=True).len().iter_rows():
                counter[key] += n
        for header, rule, validity, n in (
            f.group_by(["header", "rule", "validity"], maintain_order=True).len().iter_rows()
        ):
            s.by_field_rule[(header, rule, validity)] += n
        self._failed(checked, labels, f)

    def _profile_rows(self, checked: _Checked, labels: pl.Series) -> None:
        names = self.plan.names
        cases = [f"__case__{n}" for n in names]
        grouped = (
            pl.concat([checked.frame, checked.detail.select(cases)], how="horizontal")
            .with_columns(labels)
            .group_by(["__event__", *cases], maintain_order=True)
            .agg(pl.len().alias("__rows__"), *(pl.col(n).is_not_null().sum().alias(n) for n in names))
        )
        statuses = self.statuses
        undetermined = FieldStatus.UNDETERMINED
        for row in grouped.iter_rows():
            event, case_values, n = row[0], row[1 : 1 + len(names)], row[1 + len(names)]
            counts = row[2 + len(names) :]
            plan = tuple(statuses[i][c] if c >= 0 else undetermined for i, c in enumerate(case_values))
            plan = self._interned.setdefault(plan, plan)
            present = {name: c for name, c in zip(names, counts, strict=True) if c}
            self.profile.add_rows(event, plan, n, present)

    def _unchecked(self, checked: _Checked, labels: pl.Series, f: pl.DataFrame) -> None:
        detail = checked.detail
        flags = [n for n in self.plan.names if f"__unchk__{n}" in detail.columns]
        firsts: list[tuple[int, int, str, int]] = []
        values: list[pl.DataFrame] = []
        for name in flags:
            flag = detail.get_column(f"__unchk__{name}")
            total = int(flag.sum())
            if not total:
                continue
            firsts.append((int(flag.arg_true()[0]), self.order.get(name, len(self.order)), name, total))
            values.append(
                pl.DataFrame({"__event__": labels, "value": checked.frame.get_column(name)})
                .with_row_index("row")
                .filter(flag)
                .select(pl.col("row").cast(pl.Int64), "__event__", pl.lit(name).alias("name"), "value")
            )
        for _first, _pos, name, total in sorted(firsts):
            self.summary.unchecked[name] += total
        code_rules = f.filter(
            pl.col("rule").is_in(_CODE_RULES) & pl.col("field").is_in(list(self.coded)) & pl.col("value").is_not_null()
        )
        if code_rules.height:
            values.append(
                code_rules.select("row", pl.lit("").alias("__event__"), pl.col("field").alias("name"), "value")
            )
        if not values:
            return
        items = (
            pl.concat(values)
            .group_by(["__event__", "name", "value"], maintain_order=True)
            .agg(pl.len().alias("n"), pl.col("row").min().alias("first"))
            .sort("first", maintain_order=True)
            .select("__event__", "name", "value", "n")
        )
        self.profile.add_values(list(items.iter_rows()))

    def _failed(self, checked: _Checked, labels: pl.Series, f: pl.DataFrame) -> None:
        nonblank = f.filter(pl.col("value").is_not_null())
        filled = (
            nonblank.with_columns(labels.gather(nonblank.get_column("row")).alias("__event__"))
            .group_by(["__event__", "field", "status", "validity"], maintain_order=True)
            .len()
        )
        self.profile.add_failed_cells(
            [(e, self.index[name], _STATUS[st], _VALIDITY[v], n) for e, name, st, v, n in filled.iter_rows()]
        )
        start = "__date__event_start_date"
        per_row = f.group_by("row", maintain_order=True).len()
        if start in checked.detail.columns:
            days = checked.detail.get_column(start).gather(per_row.get_column("row"))
        else:
            days = pl.Series(start, [None] * per_row.height, pl.Int32)
        by_day = (
            per_row.with_columns(days.alias("day"))
            .group_by("day", maintain_order=True)
            .agg(pl.col("len").sum().alias("failures"), pl.len().alias("rows"))
        )
        for day, failures, n in by_day.iter_rows():
            month = self._month(day)
            self.profile.failures_by_month[month] += failures
            self.profile.rows_failed_by_month[month] += n

    def _month(self, day: int | None) -> str:
        from datetime import date

        from cld_validation.profile import NO_START_MONTH

        if day is None:
            return NO_START_MONTH
        hit = self._months.get(day)
        if hit is None:
            hit = self._months[day] = date(day // 10000, day // 100 % 100, day % 100).strftime("%Y-%m")
        return hit

    def finish(self) -> None:
        """Nothing is held back between frames; kept for symmetry with the callers' lifecycle."""
