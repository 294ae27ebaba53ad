"""The submission file: headers in spec order, dates, CRLF/UTF-8, formula neutralisation, every row, SHA-256."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import pytest

from cld_schemas.spec import load_spec
from cld_submission.adapters.sqlite_record_store import StateStore
from cld_submission.adapters.submission_file import LINE_TERMINATOR, neutralise, write_submission_file
from cld_submission.domain.records import Incoming
from tests.support.builders import LA_CODE, Row, a_ckba_row, a_request_row, a_service_row
from tests.unit.test_submission_state import P_END, P_START, validated


def assemble(tmp_path: Path, rows: list[Row], **kw: object) -> tuple[Path, str, int, list[dict[str, str]]]:
    store = StateStore.open(tmp_path / "state")
    try:
        items = [Incoming(validated(r, **kw)) for r in rows]  # type: ignore[arg-type]
        store.apply_many(items)
        out = tmp_path / "out.csv"
        result = write_submission_file(
            store.iter_in_scope(LA_CODE, P_START, P_END), out, period_start=P_START, period_end=P_END
        )
    finally:
        store.close()
    text = out.read_bytes().decode("utf-8")
    parsed = list(csv.DictReader(io.StringIO(text, newline="")))
    return out, result.sha256, result.rows, parsed


def test_headers_are_the_spec_headers_in_spec_order(tmp_path: Path) -> None:
    out, _, _, _ = assemble(tmp_path, [a_request_row()])
    first_line = out.read_bytes().split(b"\r\n", 1)[0].decode("utf-8")
    expected = [f.header for f in load_spec().file_fields]
    assert next(csv.reader([first_line])) == expected
    assert len(expected) == 49


def test_utf8_crlf_and_no_byte_order_mark(tmp_path: Path) -> None:
    out, _, _, _ = assemble(tmp_path, [a_request_row(event_description="Café visit")])
    data = out.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == 2
    assert data.endswith(LINE_TERMINATOR.encode())
    assert "Café visit".encode() in data


def test_dates_are_dd_mm_yyyy_and_the_period_columns_state_the_submission_period(tmp_path: Path) -> None:
    _, _, _, [row] = assemble(tmp_path, [a_request_row(reporting_period_start_date="01/01/2024")])
    assert row["Event Start Date"] == "01/05/2024"
    assert row["Date of Birth"] == "15/06/1950"
    assert row["Reporting Period Start Date"] == "01/04/2024"
    assert row["Reporting Period End Date"] == "31/03/2025"


def test_every_in_scope_record_is_included_whatever_its_findings(tmp_path: Path) -> None:
    rows = [
        a_request_row(event_reference="A", ethnicity="Not a real ethnicity"),
        a_service_row(event_reference="B"),
        a_ckba_row(adult_1_linked_person_id="SYN-PERSON-0001", la_person_unique_identifier="C1"),
    ]
    _, _, n, parsed = assemble(tmp_path, rows, failed_fields=("Ethnicity",))
    assert n == 3
    assert len(parsed) == 3
    assert "Not a real ethnicity" in {r["Ethnicity"] for r in parsed}  # sent as received, never corrected


def test_records_flagged_with_a_national_data_opt_out_are_still_included(tmp_path: Path) -> None:
    """The national data opt-out does not apply to this legally required flow to NHS England."""
    store = StateStore.open(tmp_path / "state")
    try:
        store.apply(validated(a_request_row(event_reference="OPT"), opt_outs=("national-data-opt-out",)))
        store.apply(validated(a_service_row(event_reference="OBJ"), opt_outs=("objection",)))
        store.apply(validated(a_service_row(event_reference="NONE", la_person_unique_identifier="P2")))
        result = write_submission_file(
            store.iter_in_scope(LA_CODE, P_START, P_END), tmp_path / "f.csv", period_start=P_START, period_end=P_END
        )
    finally:
        store.close()
    assert result.rows == 3
    assert result.opt_out_rows == 2
    refs = {r["Event Reference"] for r in csv.DictReader(io.StringIO((tmp_path / "f.csv").read_text("utf-8")))}
    assert refs == {"OPT", "OBJ", "NONE"}


@pytest.mark.parametrize(
    ("value", "numeric", "expected"),
    [
        ("=HYPERLINK(1)", False, "'=HYPERLINK(1)"),
        ("+1+2", False, "'+1+2"),
        ("-5 days", False, "'-5 days"),
        ("@SUM(A1)", False, "'@SUM(A1)"),
        ("\tx", False, "'\tx"),
        ("\rx", False, "'\rx"),
        ("-12.50", True, "-12.50"),  # a legitimate negative Unit Cost stays a number
        ("-3", True, "-3"),
        ("-1+1", True, "'-1+1"),  # not a number: neutralised even in a numeric field
        ("=1", True, "'=1"),
        ("+5", True, "'+5"),
        ("-12.50", False, "'-12.50"),  # text fields are always neutralised
        ("plain", False, "plain"),
    ],
)
def test_formula_neutralisation(value: str, numeric: bool, expected: str) -> None:
    assert neutralise(value, numeric=numeric) == expected


def test_neutralisation_in_the_file(tmp_path: Path) -> None:
    _, _, _, [row] = assemble(tmp_path, [a_service_row(event_description="=cmd|' /C calc'!A0", unit_cost="-20.00")])
    assert row["Event Description"] == "'=cmd|' /C calc'!A0"
    assert row["Unit Cost"] == "-20.00"


def test_sha256_is_of_the_bytes_written_and_stable_for_the_same_content(tmp_path: Path) -> None:
    rows = [a_request_row(event_reference=f"R{i}", la_person_unique_identifier=f"P{i}") for i in range(50)]
    store = StateStore.open(tmp_path / "state")
    try:
        shas: list[str] = []
        for order in (rows, list(reversed(rows))):  # arrival order does not matter
            store.reset()
            store.apply_many([Incoming(validated(r)) for r in order])
            out = tmp_path / f"f{len(shas)}.csv"
            result = write_submission_file(
                store.iter_in_scope(LA_CODE, P_START, P_END), out, period_start=P_START, period_end=P_END
            )
            assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
            assert result.rows == 50
            shas.append(result.sha256)
    finally:
        store.close()
    assert shas[0] == shas[1]


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    out, _, _, _ = assemble(tmp_path, [a_request_row()])
    assert sorted(p.name for p in out.parent.iterdir() if p.is_file()) == ["out.csv"]
