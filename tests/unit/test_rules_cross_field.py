"""Cross-field rules: event and period dates, death, scope of the reporting period (R-SCOPE-1/2, R-FIL-1/2),
carer fields on service-user rows and event fields on 'Carer known by association' rows."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cld_schemas.spec import FieldStatus, Release, Validity, load_spec
from cld_validation.rules import validate_record
from tests.support.builders import (
    RP_END,
    RP_START,
    Row,
    a_carer_row,
    a_ckba_row,
    a_request_row,
    a_review_row,
    a_service_row,
    an_assessment_row,
)

SPEC = load_spec()
R1, R2 = Release.R1, Release.R2
DAY_BEFORE_START = "31/03/2024"
DAY_AFTER_END = "01/04/2025"


def findings(row: Row, release: Release = R1) -> list[tuple[str, str]]:
    return [(f.name, f.rule) for f in validate_record(row, release=release).findings]


# ---- event dates ----


@pytest.mark.parametrize("build", [a_request_row, an_assessment_row, a_review_row, a_service_row])
def test_event_end_before_start_is_xf001_only(build: Callable[..., Row]) -> None:
    row = build(event_start_date="10/05/2024", event_end_date="09/05/2024")
    assert findings(row) == [("event_end_date", "XF001")]


@pytest.mark.parametrize("build", [a_request_row, an_assessment_row, a_review_row])
def test_only_services_may_be_open(build: Callable[..., Row]) -> None:
    row = build(event_end_date=None)
    result = validate_record(row, release=R1)
    assert [(f.name, f.rule, f.validity, f.status) for f in result.findings] == [
        ("event_end_date", "S-EVENT-END-NOT-SERVICE", Validity.BLANK_MANDATORY, FieldStatus.MANDATORY)
    ]
    assert result.findings[0].header == "Event End Date"


@pytest.mark.parametrize("release", list(Release))
def test_open_service_is_fine(release: Release) -> None:
    assert findings(a_service_row(release, event_end_date=None), release) == []


def test_open_service_of_a_person_who_died_needs_an_end_date() -> None:
    row = a_service_row(date_of_death="01/03/2025", event_end_date=None)
    assert findings(row) == [("event_end_date", "S-EVENT-END-DECEASED")]
    assert findings({**row, "event_end_date": "01/03/2025"}) == []


# ---- death ----


def test_date_of_death_before_birth_is_xf002() -> None:
    row = a_service_row(date_of_birth="15/06/1950", date_of_death="14/06/1950", event_end_date="14/06/1950")
    assert ("date_of_death", "XF002") in findings(row)


def test_xf002_on_ckba_row() -> None:
    assert findings(a_ckba_row(date_of_birth="15/06/1950", date_of_death="14/06/1950")) == [("date_of_death", "XF002")]


def test_event_after_death_is_xf007() -> None:
    row = a_review_row(date_of_death="01/06/2024", event_start_date="02/06/2024", event_end_date="03/06/2024")
    assert findings(row) == [("event_start_date", "XF007")]


def test_event_on_day_of_death_and_ending_after_it_is_fine() -> None:
    """R-FIL-3 crops the derived end date to the death; the submitted end may be later."""
    row = a_service_row(date_of_death="01/06/2024", event_start_date="01/06/2024", event_end_date="10/06/2024")
    assert findings(row) == []


def test_invalid_dates_do_not_trigger_cross_field_rules() -> None:
    row = a_review_row(event_start_date="99/99/2024", event_end_date="01/01/1900")
    assert findings(row) == [("event_start_date", "CLD011")]


# ---- reporting period ----


def test_reporting_period_end_before_start_is_xf003_and_scope_is_not_judged() -> None:
    row = a_request_row(
        reporting_period_start_date=RP_START, reporting_period_end_date=DAY_BEFORE_START, event_end_date="01/06/2030"
    )
    assert findings(row) == [("reporting_period_end_date", "XF003")]


def test_one_day_period() -> None:
    row = a_request_row(
        reporting_period_start_date="01/05/2024",
        reporting_period_end_date="01/05/2024",
        event_start_date="01/05/2024",
        event_end_date="01/05/2024",
    )
    assert findings(row) == []


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("01/03/2025", RP_END, []),  # completed on the period's last day: in
        ("01/03/2025", DAY_AFTER_END, [("event_end_date", "XF004")]),  # completed the day after: out
        ("01/01/2024", RP_START, []),  # started before, completed on the first day: in
        ("01/01/2024", DAY_BEFORE_START, [("event_end_date", "XF004")]),  # completed before the period: out
        ("01/01/2023", "15/07/2024", []),  # started before the period, completed in it
        ("10/05/2024", "10/05/2024", []),
    ],
)
@pytest.mark.parametrize("build", [a_request_row, an_assessment_row, a_review_row])
def test_requests_assessments_reviews_must_complete_in_period(
    build: Callable[..., Row], start: str, end: str, expected: list[tuple[str, str]]
) -> None:
    row = build(event_start_date=start, event_end_date=end)
    assert findings(row) == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("01/01/2020", None, []),  # started before the period and still open: in
        ("01/01/2020", RP_START, []),  # ended on the period's first day: in
        ("01/01/2020", DAY_BEFORE_START, [("event_end_date", "XF004")]),  # ended the day before: out
        ("01/01/2020", "01/01/2030", []),  # spans the whole period
        (RP_END, None, []),  # starts on the last day: in
        (DAY_AFTER_END, None, [("event_start_date", "XF004")]),  # starts after the period: out
        (DAY_AFTER_END, "02/04/2025", [("event_start_date", "XF004")]),
        ("10/05/2024", "20/05/2024", []),
    ],
)
def test_services_must_be_active_at_some_time_in_the_period(
    start: str, end: str | None, expected: list[tuple[str, str]]
) -> None:
    assert findings(a_service_row(event_start_date=start, event_end_date=end)) == expected


def test_scope_applies_in_release_2_too() -> None:
    assert findings(a_request_row(R2, event_end_date=DAY_AFTER_END), R2) == [("event_end_date", "XF004")]
    assert findings(a_service_row(R2, event_start_date="01/01/2020", event_end_date=None), R2) == []


def test_scope_is_not_judged_without_a_known_event_type() -> None:
    row = a_request_row(event_type="Referral", event_end_date=DAY_AFTER_END)
    assert findings(row) == [("event_type", "CLD002")]


# ---- carer fields on service-user rows ----
CARER_FIELDS = {
    "total_hrs_caring_per_week": "35",
    "no_of_adults_being_cared_for": "1",
    "adult_1_linked_person_id": "SYN-PERSON-0002",
    "adult_2_linked_person_id": "SYN-PERSON-0003",
    "adult_3_linked_person_id": "SYN-PERSON-0004",
}


@pytest.mark.parametrize(("field", "value"), CARER_FIELDS.items())
@pytest.mark.parametrize("release", list(Release))
def test_carer_fields_on_service_user_rows_are_xf005(field: str, value: str, release: Release) -> None:
    result = validate_record(a_service_row(release, **{field: value}), release=release)
    assert [(f.name, f.rule, f.validity, f.status) for f in result.findings] == [
        (field, "XF005", Validity.INVALID, FieldStatus.NOT_APPLICABLE)
    ]
    assert result.findings[0].header == SPEC.field(field).header


def test_all_carer_fields_on_a_service_user_row() -> None:
    assert sorted(findings(a_service_row(**CARER_FIELDS))) == sorted((f, "XF005") for f in CARER_FIELDS)


@pytest.mark.parametrize("build", [a_carer_row, a_ckba_row])
def test_carer_fields_on_carer_rows_are_fine(build: Callable[..., Row]) -> None:
    assert findings(build(**CARER_FIELDS)) == []


def test_invalid_carer_field_on_service_user_row_reports_the_value_check_only() -> None:
    assert findings(a_service_row(no_of_adults_being_cared_for="-1")) == [("no_of_adults_being_cared_for", "CLD041")]


def test_carer_fields_are_not_judged_when_client_type_is_unknown() -> None:
    row = a_service_row(client_type=None, **CARER_FIELDS)
    assert findings(row) == [("client_type", "S-CLIENT-TYPE")]


# ---- event fields on 'Carer known by association' rows ----
EVENT_VALUES = {
    "event_type": "Service",
    "event_reference": "SYN-EVT-1",
    "event_start_date": "01/05/2024",
    "event_end_date": "20/05/2024",
    "event_description": "Synthetic event",
    "event_outcome": "Provision of service",
    "request_route_of_access": "Prison",
    "assessment_type": "Long Term Assessment",
    "eligible_needs_identified": "Yes",
    "method_of_assessment": "Face to face",
    "service_type": "Long Term Support: Community",
    "service_component": "Home Support",
    "delivery_mechanism": "Direct Payment",
    "provider_cqc_location_name": "Synthetic Care Ltd",
    "provider_cqc_location_id": "1-123456789",
    "review_reason": "Planned",
    "review_outcomes_achieved": "Fully Met",
    "method_of_review": "Carer only",
    "unit_cost": "10.00",
    "cost_frequency_unit_type": "Weekly",
    "planned_units_per_week": "2",
}


def test_event_values_cover_every_event_field() -> None:
    groups = {"event", "request", "assessment", "service", "review", "cost"}
    assert set(EVENT_VALUES) == {f.name for f in SPEC.fields if f.group in groups}


@pytest.mark.parametrize(("field", "value"), EVENT_VALUES.items())
def test_event_fields_on_ckba_rows_are_xf006(field: str, value: str) -> None:
    result = validate_record(a_ckba_row(**{field: value}), release=R1)
    assert [(f.name, f.rule, f.validity, f.status) for f in result.findings] == [
        (field, "XF006", Validity.INVALID, FieldStatus.NOT_APPLICABLE)
    ]


def test_ckba_row_in_release_2() -> None:
    assert findings(a_ckba_row(R2, event_type="Service"), R2) == [("event_type", "XF006")]
    assert findings(a_ckba_row(R2), R2) == []


def test_invalid_event_field_on_ckba_row_reports_the_value_check_only() -> None:
    assert findings(a_ckba_row(unit_cost="abc")) == [("unit_cost", "CLD040")]


def test_ckba_rows_skip_event_date_rules() -> None:
    """Event dates on a CKBA row are already XF006; no XF001/XF004/XF007 on top."""
    row = a_ckba_row(event_start_date="10/05/2030", event_end_date="09/05/2030", date_of_death="01/01/2024")
    assert sorted(findings(row)) == [("event_end_date", "XF006"), ("event_start_date", "XF006")]
