"""The columnar engine against the reference engine (``rules.Validator``, ``reference.validate_stream``).

A hypothesis differential test on generated and mutated rows (both releases, with and without LA code list
overrides, with and without an LA code), on frames and on whole files; findings identical whatever the batch size
(1, 7, 1000); a single record is a one-row batch. The golden corpus itself is tests/unit/test_columnar_golden.py.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cld_schemas.csvfile import CLDFileError
from cld_schemas.spec import CodeList, CodeValue, Completeness, Release, Spec, load_code_list_override, load_spec
from cld_validation.columnar import (
    PY_WHITESPACE,
    FrameResult,
    plan_for,
    validate_frame,
    validate_stream_columnar,
)
from cld_validation.reference import validate_stream
from cld_validation.rules import validator_for
from tests.golden.build import DATA, _mutate
from tests.support import builders

SPEC = load_spec()
R1, R2 = Release.R1, Release.R2
Row = dict[str, str | None]
Finding = tuple[int, str, str, str, str, str, str]


def _override_spec() -> Spec:
    """Every partial or unknown code list of the spec declared complete (as an LA's --codelists does), and an
    official-looking Cost Frequency list: values outside them then fail instead of being unchecked."""
    overrides: dict[tuple[str, Release], CodeList] = {}
    for f in SPEC.fields:
        for release, cl in (f.code_lists or {}).items():
            if not cl.completeness.enforced and cl.values:
                overrides[(f.name, release)] = CodeList(completeness=Completeness.COMPLETE, values=cl.values)
    for release in (R1, R2):
        overrides[("cost_frequency_unit_type", release)] = CodeList(
            completeness=Completeness.COMPLETE,
            values=tuple(CodeValue(value=v, key=v.lower()) for v in ("Weekly", "Fortnightly", "Hourly")),
        )
    return SPEC.with_code_lists(overrides)


OVERRIDDEN = _override_spec()

MAKERS: list[Callable[[Release], Row]] = [
    builders.a_request_row,
    builders.an_assessment_row,
    builders.a_service_row,
    builders.a_review_row,
    builders.a_carer_row,
    builders.a_ckba_row,
]

_text = st.one_of(
    st.sampled_from(
        ["", " ", "NULL", "n/a", "31/02/2025", "29/02/2024", "01/04/2025", "2025-04-01", "9990000018", "0", "-1"]
    ),
    st.sampled_from(["12.345", "1e3", "00012", "A12345", "1-123", "SW1A 1AA", "sw1a1aa", "K1 1AA", "\u212a1 1AA"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=12),
)
_edges = [builders.RP_START, builders.RP_END, "31/03/2024", "01/04/2025", "15/06/2024"]
_date = st.one_of(
    st.sampled_from(_edges),  # equal to or a day off the builders' reporting period bounds
    st.dates(min_value=date(2023, 1, 1), max_value=date(2027, 12, 31)).map(lambda d: d.strftime("%d/%m/%Y")),
    st.sampled_from(["31/11/2025", "31/04/2025", "29/02/2100", "29/02/2000", "01/01/0000", "00/00/0000", "1/1/2025"]),
)
_number = st.one_of(
    st.decimals(min_value=-10, max_value=10**17, places=3, allow_nan=False).map(str),
    st.integers(-5, 10**7).map(str),
)
DATE_FIELDS = [f.name for f in SPEC.fields if f.format == "date"]
_pad = st.sampled_from(["", " ", "\t", "\u00a0", "\x1c", "\u3000", "  "])


@st.composite
def _rows(draw: st.DrawFn, release: Release, *, max_rows: int = 5) -> list[Row]:
    out: list[Row] = []
    for _ in range(draw(st.integers(1, max_rows))):
        row = dict(draw(st.sampled_from(MAKERS))(release))
        rnd = random.Random(draw(st.integers(0, 2**32)))
        if draw(st.booleans()):  # cross-field rules: dates against each other and the reporting period
            for name in DATE_FIELDS:
                if draw(st.booleans()):
                    row[name] = draw(_date)
        for f in draw(st.lists(st.sampled_from(SPEC.fields), max_size=6)):
            kind = draw(st.integers(0, 4))
            if kind == 4 and f.format in ("date", "integer", "decimal_2dp", "unknown"):
                row[f.name] = draw(_date if f.format == "date" else _number)
                continue
            if kind == 0 and f.format == "code" and f.code_lists:
                values = [v.value for cl in f.code_lists.values() for v in cl.values] or ["x"]
                row[f.name] = draw(st.sampled_from(values))
            elif kind == 1:
                row[f.name] = _mutate(row.get(f.name) or "", rnd)
            elif kind == 2:
                row[f.name] = None
            else:
                row[f.name] = draw(_text)
        out.append(row)
    return out


def _stripped(row: Row, la_code: str | None) -> Row:
    rec: Row = {k: (v.strip() or None) if isinstance(v, str) else None for k, v in row.items()}
    if la_code is not None and not rec.get("la_code"):
        rec["la_code"] = la_code
    return rec


def _reference_rows(
    rows: list[Row], spec: Spec, release: Release, la_code: str | None
) -> tuple[list[Finding], Counter[str]]:
    validator = validator_for(release, spec)
    findings: list[Finding] = []
    unchecked: Counter[str] = Counter()
    for n, row in enumerate(rows):
        result = validator.validate({k: v for k, v in _stripped(row, la_code).items() if v})
        findings += [
            (n, f.name, f.header, f.status.value, f.validity.value, f.rule, f.message) for f in result.findings
        ]
        unchecked.update(result.unchecked)
    return findings, unchecked


def _columnar_findings(result: FrameResult) -> list[Finding]:
    cols = ["row", "field", "header", "status", "validity", "rule", "message"]
    return [tuple(r) for r in result.findings.select(cols).iter_rows()]  # type: ignore[misc]


def _frame(rows: list[Row]) -> pl.DataFrame:
    names = [f.name for f in SPEC.fields]
    return pl.DataFrame(
        [{n: (r.get(n) or "").strip(PY_WHITESPACE) or None for n in names} for r in rows],
        schema=dict.fromkeys(names, pl.String),
    )


@st.composite
def _frame_cases(draw: st.DrawFn) -> tuple[Release, bool, str | None, list[Row]]:
    release = draw(st.sampled_from([R1, R2]))
    return (
        release,
        draw(st.booleans()),
        draw(st.sampled_from([None, "318", "31X"])),
        draw(_rows(release)),
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frame_cases())
def test_a_frame_finds_what_validate_record_finds(case: tuple[Release, bool, str | None, list[Row]]) -> None:
    release, overridden, la_code, rows = case
    spec = OVERRIDDEN if overridden else SPEC
    want, want_unchecked = _reference_rows(rows, spec, release, la_code)
    got = validate_frame(_frame(rows), plan_for(spec, release), la_code=la_code)
    assert _columnar_findings(got) == want
    assert got.unchecked == dict(want_unchecked)
    assert got.rows == len(rows)


def _csv_text(rows: list[Row], *, with_la_column: bool, ragged: list[int], pads: list[str]) -> str:
    fields = [f for f in SPEC.fields if f.in_file is True or (with_la_column and f.name == "la_code")]
    fields.sort(key=lambda f: f.order)
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([f.header for f in fields])
    for n, row in enumerate(rows):
        pad = pads[n % len(pads)]
        cells = [f"{pad}{row.get(f.name) or ''}{pad}" if row.get(f.name) else "" for f in fields]
        shape = ragged[n % len(ragged)]
        if shape == 1:
            cells = cells[: len(cells) - 3]
        elif shape == 2:
            cells += ["extra"]
        w.writerow(cells)
    return buf.getvalue()


def _reference_file(text: str, spec: Spec, release: Release, la_code: str | None) -> dict[str, Any]:
    findings: list[tuple[int, str, str, str, str, str]] = []
    summary = validate_stream(
        io.StringIO(text, newline=""),
        release=release,
        spec=spec,
        la_code=la_code,
        sink=lambda n, f: findings.append((n, f.header, f.status.value, f.validity.value, f.rule, f.message)),
    )
    return {
        "findings": findings,
        "rows": summary.rows,
        "rows_with_failures": summary.rows_with_failures,
        "failures": summary.failures,
        "unchecked": dict(summary.unchecked),
        "by_field_rule": summary.by_field_rule.most_common(),
        "ragged": (summary.short_rows, summary.long_rows, summary.ragged_lines),
    }


def _columnar_file(text: str, spec: Spec, release: Release, la_code: str | None, batch_size: int) -> dict[str, Any]:
    frames: list[pl.DataFrame] = []
    summary = validate_stream_columnar(
        io.StringIO(text, newline=""),
        release=release,
        spec=spec,
        la_code=la_code,
        sink=frames.append,
        batch_size=batch_size,
    )
    findings = [
        tuple(r) for f in frames for r in f.select("row", "header", "status", "validity", "rule", "message").iter_rows()
    ]
    return {
        "findings": findings,
        "rows": summary.rows,
        "rows_with_failures": summary.rows_with_failures,
        "failures": summary.failures,
        "unchecked": dict(summary.unchecked),
        "by_field_rule": summary.by_field_rule.most_common(),
        "ragged": (summary.short_rows, summary.long_rows, summary.ragged_lines),
    }


@st.composite
def _file_cases(draw: st.DrawFn) -> tuple[Release, bool, str | None, bool, int, str]:
    release = draw(st.sampled_from([R1, R2]))
    rows = draw(_rows(release, max_rows=6))
    with_la = draw(st.booleans())
    text = _csv_text(
        rows,
        with_la_column=with_la,
        ragged=draw(st.lists(st.sampled_from([0, 0, 0, 1, 2]), min_size=1, max_size=4)),
        pads=draw(st.lists(_pad, min_size=1, max_size=3)),
    )
    return (
        release,
        draw(st.booleans()),
        draw(st.sampled_from([None, "318", "31X"])),
        with_la,
        draw(st.sampled_from([1, 2, 7, 1000])),
        text,
    )


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_file_cases())
def test_a_file_in_batches_finds_what_validate_stream_finds(
    case: tuple[Release, bool, str | None, bool, int, str],
) -> None:
    release, overridden, la_code, _with_la, batch_size, text = case
    spec = OVERRIDDEN if overridden else SPEC
    assert _columnar_file(text, spec, release, la_code, batch_size) == _reference_file(text, spec, release, la_code)


def _golden_slice(name: str, rows: int) -> str:
    lines = gzip.decompress((DATA / f"{name}.csv.gz").read_bytes()).decode("utf-8").splitlines(keepends=True)
    return "".join(lines[: rows + 1])


@pytest.mark.parametrize(("name", "release"), [("adversarial_r1", R1), ("adversarial_r2", R2), ("generated_r1", R1)])
def test_findings_do_not_depend_on_the_batch_size(name: str, release: Release) -> None:
    text = _golden_slice(name, 90)
    by_size = {size: _columnar_file(text, SPEC, release, "318", size) for size in (1, 7, 1000)}
    assert by_size[1000]["rows"] == 90
    assert by_size[1000]["failures"] > 0
    assert by_size[1] == by_size[7] == by_size[1000]
    assert by_size[1000] == _reference_file(text, SPEC, release, "318")


@pytest.mark.parametrize("release", [R1, R2])
def test_a_single_record_is_a_one_row_batch(release: Release) -> None:
    checked = 0
    for make in MAKERS:
        for overrides in ({}, {"nhs_number": "9990000019", "event_end_date": "31/02/2025", "gender": "female"}):
            row = {**make(release), **overrides}
            want, want_unchecked = _reference_rows([row], SPEC, release, None)
            got = validate_frame(_frame([row]), plan_for(SPEC, release))
            assert _columnar_findings(got) == want
            assert got.unchecked == dict(want_unchecked)
            checked += len(want)
    assert checked > 0  # the mutated records do fail


def test_an_empty_frame_and_missing_columns() -> None:
    plan = plan_for(SPEC, R2)
    empty = validate_frame(pl.DataFrame(schema={"nhs_number": pl.String}), plan)
    assert empty.rows == 0
    assert empty.findings.height == 0
    # Columns the frame does not have are blank: the mandatory ones are reported, as for a sparse record.
    row: Row = {"nhs_number": "9990000018", "gender": "Female"}
    want, _ = _reference_rows([row], SPEC, R2, None)
    got = validate_frame(pl.DataFrame([row]), plan)
    assert _columnar_findings(got) == want
    assert any(f[5] == "S-DOB" for f in want)


def test_cells_are_stripped_of_exactly_what_str_strip_removes() -> None:
    assert set(PY_WHITESPACE) == {chr(c) for c in range(0x110000) if chr(c).isspace()}
    header = [f.header for f in SPEC.file_fields]
    base = builders.a_service_row(R2)
    cells = [base.get(f.name) or "" for f in SPEC.file_fields]
    i = [f.name for f in SPEC.file_fields].index("postcode")
    cells[i] = "\x1c" + cells[i] + "\u200b"  # \x1c is Python whitespace (stripped); U+200B is not (kept)
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n").writerows([header, cells])
    text = buf.getvalue()
    got = _columnar_file(text, SPEC, R2, "318", 10)
    assert got == _reference_file(text, SPEC, R2, "318")
    assert [f[4] for f in got["findings"]] == ["CLD030"]


def test_a_broken_file_is_refused_as_the_reference_refuses_it() -> None:
    header = ",".join(f.header for f in SPEC.file_fields)
    text = header + '\r\n"unclosed,a,b\r\nx,y\r\n'
    with pytest.raises(CLDFileError) as want:
        _reference_file(text, SPEC, R2, None)
    with pytest.raises(CLDFileError) as got:
        _columnar_file(text, SPEC, R2, None, 7)
    assert str(got.value) == str(want.value)
    assert "line 2" in str(got.value)


def test_an_la_code_list_file_is_enforced_as_the_reference_enforces_it(tmp_path: Path) -> None:
    """--codelists: an LA's CSV override loaded with load_code_list_override, then a file validated both ways."""
    override = tmp_path / "codes.csv"
    override.write_text(
        "field,release,value\n" + "".join(f"Cost Frequency (Unit Type),r2,{v}\n" for v in ("Weekly", "Hourly")),
        encoding="utf-8",
    )
    spec = SPEC.with_code_lists(load_code_list_override(override, spec=SPEC))
    rows: list[Row] = [builders.a_service_row(R2, cost_frequency_unit_type=v) for v in ("Weekly", "Monthly", "hourly")]
    text = _csv_text(rows, with_la_column=False, ragged=[0], pads=[""])
    got = _columnar_file(text, spec, R2, "318", 2)
    assert got == _reference_file(text, spec, R2, "318")
    assert [(f[0], f[4]) for f in got["findings"] if f[1] == "Cost Frequency (Unit Type)"] == [
        (2, "CLD002"),
        (3, "CLD004"),
    ]
    assert "cost_frequency_unit_type" not in got["unchecked"]  # the shipped list is unknown: unchecked without it
    assert _columnar_file(text, SPEC, R2, "318", 2)["unchecked"]["cost_frequency_unit_type"] == 3


def test_the_plan_is_compiled_once_per_spec_release_and_absent_columns() -> None:
    assert plan_for(SPEC, R2) is plan_for(SPEC, R2)
    assert plan_for(SPEC, R2) is not plan_for(SPEC, R1)
    assert plan_for(SPEC, R2) is not plan_for(SPEC, R2, absent=frozenset({"la_code"}))
    assert plan_for(OVERRIDDEN, R2) is not plan_for(SPEC, R2)


def test_a_header_only_file_and_unknown_columns() -> None:
    headers = [f.header for f in SPEC.file_fields]
    header_only = ",".join(headers) + "\r\n"
    got = _columnar_file(header_only, SPEC, R2, None, 7)
    assert got == _reference_file(header_only, SPEC, R2, None)
    assert got["rows"] == 0
    row = builders.a_service_row(R2, nhs_number="123")
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["Local Notes", *headers, "LA Code"])
    w.writerow(["free text, not ours", *(row.get(f.name) or "" for f in SPEC.file_fields), "3180"])
    text = buf.getvalue()
    got = _columnar_file(text, SPEC, R2, "318", 7)
    assert got == _reference_file(text, SPEC, R2, "318")
    assert [f[4] for f in got["findings"]] == ["CLD050", "CLD020"]  # the file's LA Code wins over --la


@st.composite
def _record_batches(draw: st.DrawFn) -> tuple[list[Row], list[Release]]:
    rows: list[Row] = []
    releases: list[Release] = []
    for _ in range(draw(st.integers(1, 3))):
        release = draw(st.sampled_from([R1, R2]))
        part = draw(_rows(release, max_rows=3))
        rows += part
        releases += [release] * len(part)
    return rows, releases


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_record_batches())
def test_a_batch_of_records_gets_what_validate_record_gives_each(case: tuple[list[Row], list[Release]]) -> None:
    """The validation service's call: one batch of records of mixed releases, each record's findings with their
    fixes as the reference gives them record by record (a record is not stripped on the wire: none here is)."""
    from cld_validation.columnar import validate_records

    rows, releases = case
    records = [{k: v for k, v in _stripped(row, None).items() if v} for row in rows]
    got = validate_records(records, releases)
    want = [validator_for(rel, SPEC).validate(rec).findings for rec, rel in zip(records, releases, strict=True)]
    assert [list(found) for found in got] == [list(found) for found in want]
