"""`cld validate` runs the checks across rows (issue 13 item 5), the identity warnings (item 8) and picks the
release for the file's period with a hint when the file looks like the other release (item 6).

Row numbers are asserted relative to the findings' own numbering (a marker failure on the same row), so the
checks across rows provably name rows as the findings do, whatever that numbering is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cld_schemas.spec import Release
from tests.support.builders import (
    a_ckba_row,
    a_request_row,
    a_service_row,
    an_assessment_row,
    synthetic_nhs_number,
)
from tests.unit.test_validate_cli import run, write_rows

MARK = {"gender": "male"}  # a capitalisation failure (CLD004 on Gender): marks a row in the findings


def _r1_file(people: int) -> list[dict[str, str | None]]:
    """Release 1 rows of a 2024/25 file: a request, an assessment and a service per person, in every month."""
    rows: list[dict[str, str | None]] = []
    for i in range(people):
        month = 4 + i % 12
        year, month = (2024, month) if month <= 12 else (2025, month - 12)
        start, end = f"01/{month:02d}/{year}", f"20/{month:02d}/{year}"
        person = {"la_person_unique_identifier": f"P{i}", "nhs_number": synthetic_nhs_number(i)}
        rows.append(
            a_request_row(Release.R1, event_reference=f"R{i}", event_start_date=start, event_end_date=end, **person)
        )
        rows.append(
            an_assessment_row(Release.R1, event_reference=f"A{i}", event_start_date=start, event_end_date=end, **person)
        )
        rows.append(a_service_row(Release.R1, event_reference=f"S{i}", event_start_date=start, **person))
    return rows


def _report(tmp_path: Path, rows: list[dict[str, str | None]], *args: str) -> tuple[int, str, dict[str, Any]]:
    report = tmp_path / "report.json"
    code, out = run(str(write_rows(tmp_path / "file.csv", rows)), "--json", str(report), "--la", "318", *args)
    return code, out, json.loads(report.read_text(encoding="utf-8"))


def _marked_rows(data: dict[str, Any]) -> list[int]:
    return sorted({f["row"] for f in data["findings"] if f["rule"] == "CLD004" and f["field"] == "Gender"})


def _check(data: dict[str, Any], check_id: str) -> dict[str, Any]:
    [check] = [c for c in data["summary"]["dataset_checks"] if c["id"] == check_id]
    return check


def test_duplicates_person_conflicts_and_rows_outside_the_period_name_their_rows_and_rules(tmp_path: Path) -> None:
    rows = [
        a_service_row(event_reference="S1", la_person_unique_identifier="P1"),
        a_service_row(event_reference="S1-AGAIN", la_person_unique_identifier="P1", **MARK),  # DHSC's duplicate
        a_request_row(event_reference="R1", la_person_unique_identifier="P2"),
        a_request_row(
            event_reference="R2",
            la_person_unique_identifier="P2",
            date_of_birth="16/06/1950",
            event_start_date="02/05/2024",
        ),
        a_request_row(event_reference="OPEN", la_person_unique_identifier="P3", event_end_date=None, **MARK),
    ]
    code, out, data = _report(tmp_path, rows)
    dup_row, open_row = _marked_rows(data)
    assert data["release"] == "r1"  # a 2024/25 file: Release 1 by its period

    dup = _check(data, "DS-DUP-EVENT")
    assert (dup["rule"], dup["examples"]) == ("R-DUP-1", [str(dup_row)])
    conflict = _check(data, "DS-PERSON-CONFLICT")
    assert conflict["rule"] == "R-DUP-5"
    assert conflict["details"]["date_of_birth"] == 1
    assert conflict["examples"] == [str(dup_row + 2)]  # the row after the first P2 row: the conflicting one
    outside = _check(data, "DS-OUTSIDE-PERIOD")
    assert outside["rule"] == "R-FIL-1"
    assert outside["details"] == {"open_event": 1}
    assert outside["examples"] == [f"open_event: row {open_row}"]
    assert data["summary"]["rows_outside_period"]["left_out"] == 1
    period = _check(data, "DS-PERIOD-DERIVED")
    assert period["details"]["stated_end"] == "2025-03-31"

    assert "DS-DUP-EVENT" in out
    assert "DS-OUTSIDE-PERIOD" in out
    assert "16/06/1950" not in json.dumps(data["summary"])
    assert code == 1  # the marker failures; the checks across rows do not change the exit code


def test_a_carer_known_by_association_whose_adult_is_not_in_the_file_is_outside_and_warned(tmp_path: Path) -> None:
    rows = [
        a_request_row(la_person_unique_identifier="P1"),
        a_ckba_row(la_person_unique_identifier="C1", nhs_number=synthetic_nhs_number(7), **MARK),
    ]
    rows[1]["adult_1_linked_person_id"] = "NOBODY"
    _, _, data = _report(tmp_path, rows)
    [carer_row] = _marked_rows(data)
    outside = _check(data, "DS-OUTSIDE-PERIOD")
    assert outside["examples"] == [f"no_linked_adult_in_scope: row {carer_row}"]
    warned = [(w["rule"], w["row"], w["field"]) for w in data["summary"]["warnings"]]
    assert warned == [("ID004", carer_row, "Adult 1 Linked Person_ID")]
    assert "NOBODY" not in json.dumps(data)


def test_identity_warnings_are_listed_with_rule_row_and_field_and_never_fail_a_row(tmp_path: Path) -> None:
    rows = [
        a_service_row(la_person_unique_identifier="P1", nhs_number="0000000000"),
        a_service_row(la_person_unique_identifier="P2", event_description="NULL", **MARK),
    ]
    code, out, data = _report(tmp_path, rows)
    [null_row] = _marked_rows(data)
    warned = {(w["rule"], w["row"], w["field"]) for w in data["summary"]["warnings"]}
    assert ("ID001", null_row - 1, "NHS Number") in warned
    assert ("ID005", null_row, "Event Description") in warned
    assert data["summary"]["warnings_by_rule"]["ID001"]["count"] == 1
    assert {f["row"] for f in data["findings"]} == {null_row}  # the placeholder row has no failure
    assert "ID001" in out
    assert "ID005" in out
    assert code == 1  # the marker failure only: warnings never fail a row
    assert "0000000000" not in json.dumps(data["summary"]["warnings"])


def test_the_999_test_range_is_recognised_and_said(tmp_path: Path) -> None:
    code, out, data = _report(tmp_path, [a_service_row(la_person_unique_identifier="P1")])
    assert data["summary"]["warnings"] == []
    assert data["summary"]["nhs_numbers_in_test_range"] == 1
    assert "999 test range" in out
    assert code == 0


def test_the_release_follows_the_period_and_a_release_1_file_checked_as_release_2_gets_a_hint(tmp_path: Path) -> None:
    rows = _r1_file(30)  # a 2024/25 file in Release 1 labels
    code, out, data = _report(tmp_path, rows)
    assert (code, data["release"], data["summary"]["release_basis"]) == (0, "r1", "reporting_period_end_date")
    assert data["summary"]["release_check"]["hint"] is None

    code, out, data = _report(tmp_path, rows, "--release", "r2")
    assert code == 1
    check = data["summary"]["release_check"]
    assert check["looks_like"] == "r1"
    assert check["hint"].endswith("(checked against Release 2; choose the release with --release r1)")
    assert "Release 1 labels: is this a Release 1 file?" in " ".join(out.split())


def test_previous_report_gives_partial_and_top_up_signs(tmp_path: Path) -> None:
    rows = _r1_file(90)
    first = tmp_path / "first"
    first.mkdir()
    _report(first, rows)
    code, out, data = _report(tmp_path, rows[: len(rows) // 3], "--previous", str(first / "report.json"))
    ids = {c["id"] for c in data["summary"]["dataset_checks"]}
    assert {"DS-PARTIAL-ROWS", "DS-PARTIAL-PEOPLE"} <= ids
    assert "DS-PARTIAL-ROWS" in out
    assert code == 0
    assert _check(data, "DS-PARTIAL-ROWS")["details"]["previous"] == len(rows)


def test_a_file_of_one_event_type_looks_like_a_top_up(tmp_path: Path) -> None:
    rows = [
        a_request_row(la_person_unique_identifier=f"P{i}", event_reference=f"R{i}", nhs_number=None) for i in range(120)
    ]
    _, _, data = _report(tmp_path, rows)
    top_up = _check(data, "DS-TOP-UP-EVENT-TYPES")
    assert top_up["details"]["missing"] == "assessment, service, review"


def test_an_unusable_previous_report_exits_2_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"summary": {}}', encoding="utf-8")
    code, out = run(str(write_rows(tmp_path / "f.csv", [a_service_row()])), "--previous", str(bad), "--la", "318")
    assert code == 2
    assert "not a `cld validate --json` report" in out
    code, out = run(str(tmp_path / "f.csv"), "--previous", str(tmp_path / "missing.json"), "--la", "318")
    assert code == 2
    assert "cannot read the previous report" in out
