"""Differential property test: the columnar submission file and dataset checks (``cld_submission.domain.frames``,
``cld_submission.domain.checks.DatasetChecker``) agree with the per-record engines they replaced, kept as an oracle in
``tests/support/submission_oracle.py``, on generated records built to collide (few people, references, dates
and codes; whitespace, casing and Unicode variants; values a spreadsheet would run as formulas; CSV quoting).

The batch path (``add_frame`` over frames split anywhere) and the one-row path (``add``) are both held to it.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cld_schemas.spec import load_spec
from cld_submission.adapters.submission_file import write_submission_file
from cld_submission.domain.checks import DatasetChecker
from cld_submission.domain.frames import stored_frame
from cld_submission.domain.identity import Kind
from cld_submission.domain.records import StoredRecord
from tests.support.submission_oracle import OracleDatasetChecker, oracle_write_submission_file

P_START, P_END, IMPORT = date(2025, 4, 1), date(2026, 3, 31), date(2026, 4, 15)
SPEC = load_spec()
_SAMPLES = st.sampled_from(
    [
        None,
        "",
        " ",
        "a",
        " a ",
        "A",
        "a\x1f",
        "\x1ca",
        "\u00a0a",
        "a\u3000",
        "\r=x",
        "\rx",
        "=1+1",
        "-12.5",
        "-1e3",
        "-12.",
        "+44",
        "@x",
        "\tx",
        "x,y",
        'q"q',
        "l\nm",
        "c\rd",
        "٣",
        "-٣",
        "-１２",
        "Male",
        "male ",
        "FEMALE",
        "01/01/1950",
        " 01/01/1950",
    ]
)
_TEXT = st.one_of(_SAMPLES, _SAMPLES, _SAMPLES, st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6))
_KEYISH = st.sampled_from(
    [
        None,
        "",
        "a",
        " a ",
        "a\x1f",
        "\x1ca",
        "A",
        "\u00a0a",
        "b",
        "01/01/1950",
        " 01/01/1950",
        "Male",
        "male ",
        "FEMALE",
    ]
)
"""Values of the fields the checks compare: few, so that rows collide, in variants that must (not) compare equal."""
_CHECKED = (
    "date_of_birth",
    "gender",
    "event_reference",
    "event_type",
    "event_start_date",
    "client_type",
    "request_route_of_access",
    "assessment_type",
    "service_type",
    "unit_cost",
)
_FILE_FIELDS = [f.name for f in SPEC.file_fields]


@st.composite
def _records(draw: st.DrawFn) -> StoredRecord:
    kind = draw(st.sampled_from(list(Kind)))
    event_type = draw(st.sampled_from([None, "", "request", "assessment", "service", "review"]))
    record = {n: draw(_TEXT) for n in draw(st.lists(st.sampled_from(_FILE_FIELDS), max_size=8))}
    record.update({n: draw(_KEYISH) for n in _CHECKED})
    record["event_reference"] = draw(st.sampled_from([None, "", "R1", " R1", "R2", "R3"]))
    findings = tuple(
        draw(st.lists(st.tuples(st.sampled_from(["Gender", "Ethnicity"]), st.just("CLD002"), st.just("v")), max_size=2))
    )
    flags: frozenset[str] = frozenset()
    return StoredRecord(
        record_key=draw(st.sampled_from(["k1", "k2", "k3"])),
        kind=kind,
        event_type=event_type,
        client_type=None,
        person_key=draw(st.sampled_from([None, "p1", "p2"])),
        start=None,
        derived_end=draw(
            st.sampled_from([None, date(2025, 5, 31), date(2025, 6, 1), date(2026, 3, 31), date(999, 1, 2)])
        ),
        record=record,
        findings=findings,
        failed=draw(st.booleans()),
        opt_out=draw(st.booleans()),
        content_hash="h",
        opt_outs=flags,  # type: ignore[arg-type]
    )


def _results(c: DatasetChecker | OracleDatasetChecker) -> tuple[object, ...]:
    return (
        [r.model_dump() for r in c.finish()],
        c.profile().model_dump(),
        [f.model_dump() for f in c.record_findings()],
        c.rows,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(_records(), max_size=40), cut=st.integers(min_value=1, max_value=40))
def test_columnar_checks_agree_with_the_per_record_oracle(records: list[StoredRecord], cut: int) -> None:
    oracle = OracleDatasetChecker(period_start=P_START, period_end=P_END, import_date=IMPORT)
    one_by_one = DatasetChecker(period_start=P_START, period_end=P_END, import_date=IMPORT)
    batched = DatasetChecker(period_start=P_START, period_end=P_END, import_date=IMPORT)
    for r in records:
        oracle.add(r)
        one_by_one.add(r)
    for start in range(0, len(records), cut):
        batched.add_frame(stored_frame(records[start : start + cut], first_row=start + 1))
    expected = _results(oracle)
    assert _results(one_by_one) == expected
    assert _results(batched) == expected


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(_records(), max_size=30))
def test_columnar_file_is_byte_identical_to_the_oracle(records: list[StoredRecord], tmp_path: Path) -> None:
    old = oracle_write_submission_file(records, tmp_path / "old.csv", period_start=P_START, period_end=P_END)
    seen: list[StoredRecord] = []
    new = write_submission_file(
        records, tmp_path / "new.csv", period_start=P_START, period_end=P_END, on_row=seen.append, batch=7
    )
    assert (tmp_path / "new.csv").read_bytes() == (tmp_path / "old.csv").read_bytes()
    assert (new.sha256, new.rows, new.size_bytes, new.opt_out_rows) == (
        old.sha256,
        old.rows,
        old.size_bytes,
        old.opt_out_rows,
    )
    assert seen == records


def test_an_empty_batch_changes_nothing() -> None:
    c = DatasetChecker(period_start=P_START, period_end=P_END, import_date=IMPORT)
    c.add_frame(stored_frame([], first_row=1))
    assert c.rows == 0
    assert next(r.id for r in c.finish()) == "DS-EMPTY"
    assert isinstance(stored_frame([], first_row=1), pl.DataFrame)
