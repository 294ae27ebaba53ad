"""The DQ profile (issue 13, item 2): status x validity per field and event type, passes included."""

from __future__ import annotations

import csv
import io

import pytest

from cld_schemas.spec import Release, load_spec
from cld_validation import profile as profile_module
from cld_validation.profile import ALL_EVENTS, PID
from cld_validation.report import validate_stream
from tests.support.builders import Row, a_request_row, a_service_row

SPEC = load_spec()
HEADERS = [f.header for f in SPEC.file_fields]
BY_HEADER = {f.header: f.name for f in SPEC.fields}


def _csv(rows: list[Row]) -> io.StringIO:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HEADERS)
    for row in rows:
        w.writerow([row.get(BY_HEADER[h]) or "" for h in HEADERS])
    buf.seek(0)
    return buf


def _profile(rows: list[Row]) -> dict[str, dict[str, object]]:
    summary = validate_stream(_csv(rows), release=Release.R2, la_code="318")
    data = summary.to_json(SPEC)["profile"]
    assert data is not None
    return {f["field"]: f for f in data["fields"]}


def test_passes_are_counted_per_field_and_event_type() -> None:
    rows = [a_service_row(Release.R2), a_service_row(Release.R2, gender="female"), a_request_row(Release.R2)]
    prof = _profile(rows)
    gender = prof["Gender"]["by_event_type"]
    assert gender[ALL_EVENTS]["validity"]["Passed: Valid"] == 2
    assert gender[ALL_EVENTS]["validity"]["Failed: Invalid"] == 1
    assert gender["Service"]["rows"] == 2
    assert gender["Request"]["rows"] == 1
    assert gender["Service"]["status"]["Mandatory"] == 2
    assert set(gender["Service"]["validity"]) == {
        "Passed: Valid",
        "Passed: Blank (Not Mandatory)",
        "Failed: Blank (Mandatory)",
        "Failed: Invalid",
        "Failed: Release 1",
    }
    assert prof["Gender"]["invalid_and_unchecked_values"] == {"female": 1}


def test_completeness_counts_blank_cells() -> None:
    rows = [a_service_row(Release.R2, date_of_death=None) for _ in range(3)]
    rows.append(a_service_row(Release.R2, date_of_death="01/01/2026", event_end_date="01/01/2026"))
    dod = _profile(rows)["Date of Death"]["by_event_type"][ALL_EVENTS]
    assert dod["completeness_percent"] == 25.0
    assert dod["validity"]["Passed: Blank (Not Mandatory)"] == 3


def test_personal_fields_never_show_values() -> None:
    prof = _profile([a_service_row(Release.R2, nhs_number="9990000019", postcode="QZ99 9QQX")])
    assert prof["NHS Number"]["invalid_and_unchecked_values"] == PID
    assert prof["Postcode"]["invalid_and_unchecked_values"] == PID
    assert prof["NHS Number"]["by_event_type"][ALL_EVENTS]["validity"]["Failed: Invalid"] == 1
    text = repr(prof)
    assert "9990000019" not in text
    assert "QZ99" not in text


def test_folding_early_gives_the_same_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [a_service_row(Release.R2), a_service_row(Release.R2, gender="female"), a_request_row(Release.R2)] * 3
    late = validate_stream(_csv(rows), release=Release.R2, la_code="318").to_json(SPEC)["profile"]
    monkeypatch.setattr(profile_module, "_FOLD_AT", 1)  # fold after every row, as a huge varied file would
    early = validate_stream(_csv(rows), release=Release.R2, la_code="318").to_json(SPEC)["profile"]
    assert early == late
    assert late["fields"][0]["by_event_type"][ALL_EVENTS]["rows"] == 9
