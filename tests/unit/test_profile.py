"""The DQ profile (issue 13, item 2): status x validity per field and event type, passes included."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import date

import pytest

from cld_schemas.spec import FieldStatus, Release, Validity, load_spec
from cld_synth import generate_rows
from cld_validation import profile as profile_module
from cld_validation.profile import ALL_EVENTS, PID
from cld_validation.report import validate_stream
from cld_validation.rules import Validator
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


def test_the_profile_state_does_not_grow_with_rows() -> None:
    rows = [a_service_row(Release.R2), a_service_row(Release.R2, gender="female"), a_request_row(Release.R2)]
    once = validate_stream(_csv(rows), release=Release.R2, la_code="318").profile
    five = validate_stream(_csv(rows * 5), release=Release.R2, la_code="318").profile
    assert once is not None
    assert five is not None
    assert len(five._rows) == len(once._rows)
    assert len(five._present) == len(once._present)
    assert len(five._corrections) == len(once._corrections)
    gender = SPEC.field("gender").order
    assert five.cells()["Service"][gender] == Counter({k: 5 * n for k, n in once.cells()["Service"][gender].items()})


@pytest.mark.parametrize(("seed", "error_rate"), [(3, 0.0), (11, 0.2), (29, 0.5)])
def test_the_aggregate_profile_equals_counting_every_cell(seed: int, error_rate: float) -> None:
    """The profile's shortcut (validity from status and blankness, corrected by failures) against the
    validator's own per-cell validities, on varied synthetic files with injected errors."""
    rows = [
        row
        for row, _ in generate_rows(
            people=120, seed=seed, period_end=date(2026, 3, 31), release=Release.R2, error_rate=error_rate
        )
    ]
    summary = validate_stream(_csv(rows), release=Release.R2, la_code="318")
    assert summary.profile is not None
    got = {
        (event, i, st, va): n
        for event, per in summary.profile.cells().items()
        for i, c in enumerate(per)
        for (st, va), n in c.items()
    }
    validator = Validator(SPEC, Release.R2)
    want: Counter[tuple[str, int, FieldStatus, Validity]] = Counter()
    for row in rows:
        rec = {BY_HEADER[h]: (row.get(BY_HEADER[h]) or "").strip() or None for h in HEADERS}
        rec["la_code"] = rec.get("la_code") or "318"
        result = validator.validate(rec)
        event = summary.profile.event_label(rec.get("event_type"))
        for i, (st, va) in enumerate(zip(result.statuses, result.validities, strict=True)):
            want[(event, i, st, va)] += 1
    assert got == dict(want)
    if error_rate:
        assert any(va.failed for (_, _, _, va) in got), "the file was meant to have failures"


def test_unchecked_values_are_counted_and_capped_per_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_module, "MAX_VALUES_PER_FIELD", 2)
    monkeypatch.setattr(profile_module, "_TRIM_AT", 3)  # trim while reading, as a long file would
    values = ["Yes", "Yes", "Yes", "No", "No", "Maybe", "Perhaps"]
    rows = [a_service_row(Release.R2, visual_impairment=v) for v in values]
    prof = _profile(rows)["Visual Impairment"]
    assert prof["by_event_type"][ALL_EVENTS]["unchecked"] == len(values)
    assert prof["by_event_type"]["Service"]["unchecked"] == len(values)
    assert prof["invalid_and_unchecked_values"] == {"Yes": 3, "No": 2}
    assert prof["other_values_not_listed"] == 2
