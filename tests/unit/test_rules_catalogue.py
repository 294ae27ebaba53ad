"""Every rule of the spec's catalogue (CLD001..CLD053, XF001..XF007) has a valid and an invalid case.

Each case names the catalogue rule it exercises. A valid case asserts the row has no findings at all; an
invalid case asserts the row has exactly one finding, on the named field, with the exact rule id, validity
and header. ``test_catalogue_rule_has_cases`` fails when a rule in the spec data has no valid or no invalid
case here, so adding a rule to the spec without a test is caught.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cld_schemas.spec import Release, Validity, load_spec
from cld_validation.rules import MAX_TEXT_LENGTH, validate_record
from tests.support.builders import (
    RP_END,
    RP_START,
    Row,
    a_carer_row,
    a_ckba_row,
    a_request_row,
    a_review_row,
    a_service_row,
    synthetic_nhs_number,
)

SPEC = load_spec()
R1, R2 = Release.R1, Release.R2


@dataclass(frozen=True)
class Case:
    catalogue_id: str
    label: str
    row: Row
    release: Release
    field: str
    """The field the invalid case fails (for a valid case: the field whose validity must be 'Passed: Valid')."""
    invalid: bool
    finding_rule: str | None = None
    """The rule id expected in the finding when it differs from the catalogue id (CLD001 reports the status rule)."""


def valid(catalogue_id: str, label: str, row: Row, field: str, release: Release = R1) -> Case:
    return Case(catalogue_id, label, row, release, field, invalid=False)


def invalid(
    catalogue_id: str, label: str, row: Row, field: str, release: Release = R1, finding_rule: str | None = None
) -> Case:
    return Case(catalogue_id, label, row, release, field, invalid=True, finding_rule=finding_rule)


CASES: list[Case] = [
    # CLD001: the finding carries the status rule id that made the field mandatory.
    valid("CLD001", "event start present", a_service_row(), "event_start_date"),
    invalid(
        "CLD001",
        "event start blank",
        a_service_row(event_start_date=None),
        "event_start_date",
        finding_rule="S-EVENT-START",
    ),
    invalid(
        "CLD001",
        "non-service end blank",
        a_review_row(event_end_date=None),
        "event_end_date",
        finding_rule="S-EVENT-END-NOT-SERVICE",
    ),
    invalid("CLD001", "nhs number blank", a_service_row(nhs_number=None), "nhs_number", finding_rule="S-NHS-NUMBER"),
    # CLD002
    valid("CLD002", "gender in r1 list", a_service_row(gender="Female"), "gender"),
    invalid("CLD002", "gender not in r1 list", a_service_row(gender="Woman"), "gender"),
    invalid("CLD002", "r2 ethnicity in r1 file", a_service_row(ethnicity="White: Irish"), "ethnicity"),
    # CLD003
    valid("CLD003", "r2 ethnicity in r2 file", a_service_row(R2, ethnicity="White: Irish"), "ethnicity", R2),
    invalid("CLD003", "r1 ethnicity in r2 file", a_service_row(R2, ethnicity="White - Irish"), "ethnicity", R2),
    invalid("CLD003", "r1 client type in r2 file", a_service_row(R2, client_type="Service User"), "client_type", R2),
    # CLD004
    valid("CLD004", "exact case", a_service_row(event_type="Service"), "event_type"),
    invalid("CLD004", "lower case gender", a_service_row(gender="female"), "gender"),
    invalid("CLD004", "upper case", a_service_row(gender="FEMALE"), "gender"),
    invalid("CLD004", "doubled space", a_review_row(review_outcomes_achieved="Fully  Met"), "review_outcomes_achieved"),
    # CLD010 / CLD011
    valid("CLD010", "dd/mm/yyyy", a_service_row(date_of_birth="01/02/1950"), "date_of_birth"),
    invalid("CLD010", "iso date", a_service_row(date_of_birth="1950-02-01"), "date_of_birth"),
    invalid("CLD010", "time stamp", a_service_row(event_start_date="01/05/2024 00:00"), "event_start_date"),
    valid("CLD011", "leap day 2024", a_service_row(event_start_date="29/02/2024"), "event_start_date"),
    valid("CLD011", "leap day 2000", a_service_row(date_of_birth="29/02/2000"), "date_of_birth"),
    invalid("CLD011", "30 February", a_service_row(date_of_birth="30/02/1950"), "date_of_birth"),
    invalid("CLD011", "29/02 non-leap", a_service_row(date_of_birth="29/02/1951"), "date_of_birth"),
    # CLD020 / CLD021
    valid("CLD020", "10 digits", a_service_row(nhs_number=synthetic_nhs_number(3)), "nhs_number"),
    invalid("CLD020", "spaced", a_service_row(nhs_number="999 000 0018"), "nhs_number"),
    invalid("CLD020", "9 digits", a_service_row(nhs_number="999000001"), "nhs_number"),
    valid("CLD021", "check digit ok", a_service_row(nhs_number="9990000018"), "nhs_number"),
    invalid("CLD021", "check digit wrong", a_service_row(nhs_number="9990000019"), "nhs_number"),
    # CLD030
    valid("CLD030", "A9 9AA", a_service_row(postcode="M1 1AE"), "postcode"),
    invalid("CLD030", "not a postcode", a_service_row(postcode="LS1 4A"), "postcode"),
    # CLD040
    valid("CLD040", "2 dp", a_service_row(unit_cost="1234.56"), "unit_cost"),
    invalid("CLD040", "3 dp", a_service_row(unit_cost="12.345"), "unit_cost"),
    invalid("CLD040", "words", a_service_row(planned_units_per_week="ten"), "planned_units_per_week"),
    # CLD041
    valid("CLD041", "whole number", a_carer_row(no_of_adults_being_cared_for="2"), "no_of_adults_being_cared_for"),
    invalid("CLD041", "negative", a_carer_row(no_of_adults_being_cared_for="-1"), "no_of_adults_being_cared_for"),
    invalid("CLD041", "decimal", a_carer_row(no_of_adults_being_cared_for="1.5"), "no_of_adults_being_cared_for"),
    # CLD050
    valid("CLD050", "3 digits", a_service_row(la_code="909"), "la_code"),
    invalid("CLD050", "2 digits", a_service_row(la_code="31"), "la_code"),
    invalid("CLD050", "ONS code", a_service_row(la_code="E08000035"), "la_code"),
    # CLD051
    valid("CLD051", "ODS code", a_service_row(gp_practice_code="B86001"), "gp_practice_code"),
    invalid("CLD051", "lower-case letter", a_service_row(gp_practice_code="b86001"), "gp_practice_code"),
    invalid("CLD051", "too short", a_service_row(gp_practice_code="B8600"), "gp_practice_code"),
    # CLD052
    valid("CLD052", "1-digits", a_service_row(provider_cqc_location_id="1-1000000001"), "provider_cqc_location_id"),
    invalid("CLD052", "no prefix", a_service_row(provider_cqc_location_id="1000000001"), "provider_cqc_location_id"),
    invalid("CLD052", "letters", a_service_row(provider_cqc_location_id="1-ABC"), "provider_cqc_location_id"),
    # CLD053
    valid("CLD053", "at the limit", a_service_row(event_description="d" * MAX_TEXT_LENGTH), "event_description"),
    invalid(
        "CLD053", "over the limit", a_service_row(event_description="d" * (MAX_TEXT_LENGTH + 1)), "event_description"
    ),
    invalid("CLD053", "over-long code", a_service_row(gender="M" * (MAX_TEXT_LENGTH + 1)), "gender"),
    # XF001
    valid(
        "XF001",
        "end on start day",
        a_review_row(event_start_date="10/05/2024", event_end_date="10/05/2024"),
        "event_end_date",
    ),
    invalid(
        "XF001",
        "end before start",
        a_review_row(event_start_date="10/05/2024", event_end_date="09/05/2024"),
        "event_end_date",
    ),
    # XF002
    valid(
        "XF002",
        "death on birth day",
        a_ckba_row(date_of_birth="01/01/1950", date_of_death="01/01/1950"),
        "date_of_death",
    ),
    invalid(
        "XF002",
        "death before birth",
        a_ckba_row(date_of_birth="02/01/1950", date_of_death="01/01/1950"),
        "date_of_death",
    ),
    # XF003
    valid(
        "XF003",
        "one-day period",
        a_service_row(reporting_period_start_date="01/05/2024", reporting_period_end_date="01/05/2024"),
        "reporting_period_end_date",
    ),
    invalid(
        "XF003",
        "end before start",
        a_service_row(reporting_period_start_date=RP_START, reporting_period_end_date="31/03/2024"),
        "reporting_period_end_date",
    ),
    # XF004
    valid("XF004", "request ends on period end", a_request_row(event_end_date=RP_END), "event_end_date"),
    invalid("XF004", "request ends day after period", a_request_row(event_end_date="01/04/2025"), "event_end_date"),
    invalid(
        "XF004",
        "service ends day before period",
        a_service_row(event_start_date="01/01/2024", event_end_date="31/03/2024"),
        "event_end_date",
    ),
    invalid("XF004", "service starts after period", a_service_row(event_start_date="01/04/2025"), "event_start_date"),
    # XF005
    valid(
        "XF005",
        "carer field on carer row",
        a_carer_row(adult_2_linked_person_id="SYN-PERSON-0003"),
        "adult_2_linked_person_id",
    ),
    invalid(
        "XF005",
        "carer field on service user row",
        a_service_row(no_of_adults_being_cared_for="1"),
        "no_of_adults_being_cared_for",
    ),
    invalid(
        "XF005",
        "linked id on service user row",
        a_service_row(adult_3_linked_person_id="SYN-PERSON-0004"),
        "adult_3_linked_person_id",
    ),
    # XF006
    valid(
        "XF006",
        "carer detail on ckba row",
        a_ckba_row(no_of_adults_being_cared_for="2"),
        "no_of_adults_being_cared_for",
    ),
    invalid("XF006", "event type on ckba row", a_ckba_row(event_type="Service"), "event_type"),
    invalid("XF006", "unit cost on ckba row", a_ckba_row(unit_cost="10.00"), "unit_cost"),
    # XF007
    valid(
        "XF007",
        "event starts on day of death",
        a_review_row(date_of_death="10/05/2024", event_start_date="10/05/2024", event_end_date="10/05/2024"),
        "event_start_date",
    ),
    invalid(
        "XF007",
        "event starts after death",
        a_review_row(date_of_death="09/05/2024", event_start_date="10/05/2024", event_end_date="10/05/2024"),
        "event_start_date",
    ),
]


def _case_id(c: Case) -> str:
    return f"{c.catalogue_id}-{'invalid' if c.invalid else 'valid'}-{c.label}"


@pytest.mark.parametrize("case", [c for c in CASES if not c.invalid], ids=_case_id)
def test_valid_case_has_no_findings(case: Case) -> None:
    result = validate_record(case.row, release=case.release)
    assert result.findings == []
    assert not result.failed
    i = [f.name for f in sorted(SPEC.fields, key=lambda f: f.order)].index(case.field)
    assert result.validities[i] is Validity.VALID


@pytest.mark.parametrize("case", [c for c in CASES if c.invalid], ids=_case_id)
def test_invalid_case_has_exactly_the_expected_finding(case: Case) -> None:
    result = validate_record(case.row, release=case.release)
    rule = SPEC.rule(case.catalogue_id)
    header = SPEC.field(case.field).header
    got = [(f.header, f.rule, f.validity) for f in result.findings]
    assert got == [(header, case.finding_rule or case.catalogue_id, rule.validity)]
    assert result.failed
    i = [f.name for f in sorted(SPEC.fields, key=lambda f: f.order)].index(case.field)
    assert result.validities[i] is rule.validity
    assert result.findings[0].name == case.field


def test_cld001_findings_name_a_real_status_case_of_the_field() -> None:
    for case in CASES:
        if case.catalogue_id == "CLD001" and case.invalid:
            assert case.finding_rule in {c.id for c in SPEC.field(case.field).status}


@pytest.mark.parametrize("rule_id", [r.id for r in SPEC.rules])
def test_catalogue_rule_has_cases(rule_id: str) -> None:
    kinds = {c.invalid for c in CASES if c.catalogue_id == rule_id}
    assert kinds == {True, False}, f"{rule_id} needs at least one valid and one invalid case"


def test_cases_only_name_catalogue_rules() -> None:
    assert {c.catalogue_id for c in CASES} == {r.id for r in SPEC.rules}
