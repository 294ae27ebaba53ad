"""Field status rules: the right status (Mandatory / Applicable / Not applicable / Undetermined) for rows.

``STATUS_TABLE`` names, for each expectation, the spec status case that should decide it; a test checks that
every status case of every field in the spec data is exercised here (fields with one unconditional case and
the 'Carer known by association' cases are generated from the spec data). Where a case makes a field
Mandatory, blanking the field must produce a 'Failed: Blank (Mandatory)' finding carrying that case's id.
"""

from __future__ import annotations

from typing import Any

import pytest

from cld_schemas.spec import FieldStatus, Release, Validity, load_spec
from cld_validation.rules import RowResult, validate_record
from tests.support.builders import (
    Row,
    a_carer_row,
    a_ckba_row,
    a_financial_assessment_row,
    a_request_row,
    a_review_row,
    a_service_row,
    an_assessment_row,
)

SPEC = load_spec()
ORDERED = [f.name for f in sorted(SPEC.fields, key=lambda f: f.order)]
R1, R2 = Release.R1, Release.R2
M, A, NA, U = (
    FieldStatus.MANDATORY,
    FieldStatus.APPLICABLE,
    FieldStatus.NOT_APPLICABLE,
    FieldStatus.UNDETERMINED,
)
CKBA_WHEN = {"client_type": ["carer_known_by_association"]}


def status_of(row: Row, field: str, release: Release = R1) -> FieldStatus:
    return validate_record(row, release=release).statuses[ORDERED.index(field)]


def _lt_dp(**kw: str | None) -> Row:
    """A service paid by direct payment (cost fields depend on type, component and delivery mechanism)."""
    return a_service_row(**{"delivery_mechanism": "Direct Payment", **kw})


def P(case_id: str, row: Row, field: str, expected: FieldStatus, release: Release = R1, *marks: Any) -> Any:  # noqa: N802
    return pytest.param(case_id, row, field, expected, release, id=f"{case_id}:{field}:{expected.value}", marks=marks)


LD = "Learning Disability Support"
COST_FIELDS = ("unit_cost", "cost_frequency_unit_type", "planned_units_per_week")
COST_IDS = {
    "unit_cost": "S-UNIT-COST",
    "cost_frequency_unit_type": "S-COST-FREQ",
    "planned_units_per_week": "S-PLANNED-UNITS",
}

STATUS_TABLE: list[Any] = [
    # Primary Support Reason
    P("S-PSR-REQUEST", a_request_row(), "primary_support_reason", A),
    P("S-PSR", a_service_row(), "primary_support_reason", M),
    P("S-PSR", a_review_row(), "primary_support_reason", M),
    P("S-PSR", a_carer_row(), "primary_support_reason", M),
    # Employment Status: mandatory for service users 18-64 at period end (31/03/2025) with LD support
    P(
        "S-EMPLOYMENT-LD-18-64",
        a_service_row(primary_support_reason=LD, date_of_birth="31/03/2007"),
        "employment_status",
        M,
    ),
    P(
        "S-EMPLOYMENT-LD-18-64",
        a_service_row(primary_support_reason=LD, date_of_birth="01/04/1960"),
        "employment_status",
        M,
    ),
    P(
        "S-EMPLOYMENT-LD-18-64",
        a_service_row(R2, primary_support_reason="Learning disability support", date_of_birth="01/01/1990"),
        "employment_status",
        M,
        R2,
    ),
    P("S-EMPLOYMENT", a_service_row(primary_support_reason=LD, date_of_birth="01/04/2007"), "employment_status", A),
    P("S-EMPLOYMENT", a_service_row(primary_support_reason=LD, date_of_birth="31/03/1960"), "employment_status", A),
    P(
        "S-EMPLOYMENT",
        a_service_row(primary_support_reason="Mental Health Support", date_of_birth="01/01/1990"),
        "employment_status",
        A,
    ),
    P(
        "S-EMPLOYMENT",
        a_service_row(primary_support_reason="Mental Health Support", date_of_birth=None),
        "employment_status",
        A,
    ),
    P("S-EMPLOYMENT", a_carer_row(primary_support_reason=LD, date_of_birth="01/01/1990"), "employment_status", A),
    P("S-EMPLOYMENT", a_ckba_row(date_of_birth="01/01/1990"), "employment_status", A),
    # Service-user-only person fields
    *[
        P(f"S-{k}-SU", a_service_row(), f, A)
        for k, f in (
            ("ASD", "autism_spectrum_disorder_asd"),
            ("VISUAL", "visual_impairment"),
            ("HEARING", "hearing_impairment"),
            ("DEMENTIA", "dementia"),
        )
    ],
    *[
        P(f"S-{k}-OTHER", row, f, NA)
        for k, f in (
            ("ASD", "autism_spectrum_disorder_asd"),
            ("VISUAL", "visual_impairment"),
            ("HEARING", "hearing_impairment"),
            ("DEMENTIA", "dementia"),
        )
        for row in (a_carer_row(), a_ckba_row())
    ],
    # Client Funding Status
    P("S-FUNDING-NOT-SU", a_carer_row(), "client_funding_status", NA),
    P("S-FUNDING-NOT-SU", a_ckba_row(), "client_funding_status", NA),
    P("S-FUNDING-MANDATORY", a_service_row(), "client_funding_status", M),
    P("S-FUNDING-MANDATORY", a_review_row(), "client_funding_status", M),
    P("S-FUNDING-MANDATORY", a_financial_assessment_row(), "client_funding_status", M),
    P("S-FUNDING", an_assessment_row(), "client_funding_status", A),
    P("S-FUNDING", a_request_row(), "client_funding_status", A, R1),
    # Event fields
    P("S-EVENT-TYPE", a_service_row(), "event_type", M),
    P("S-EVENT-TYPE", a_carer_row(), "event_type", M),
    P("S-EVENT-REF", a_request_row(), "event_reference", A),
    P("S-EVENT-START", a_review_row(), "event_start_date", M),
    P("S-EVENT-DESC", an_assessment_row(), "event_description", A),
    P("S-EVENT-END-DECEASED", a_service_row(date_of_death="01/03/2025"), "event_end_date", M),
    P("S-EVENT-END-DECEASED", a_service_row(date_of_death="01/03/2025", event_type=None), "event_end_date", M),
    P("S-EVENT-END-NOT-SERVICE", a_request_row(), "event_end_date", M),
    P("S-EVENT-END-NOT-SERVICE", an_assessment_row(), "event_end_date", M),
    P("S-EVENT-END-NOT-SERVICE", a_review_row(), "event_end_date", M),
    P("S-EVENT-END-NOT-SERVICE", a_carer_row(event="review"), "event_end_date", M),
    P("S-EVENT-END-SERVICE", a_service_row(), "event_end_date", A),
    P("S-EVENT-END-SERVICE", a_carer_row(event="service"), "event_end_date", A),
    P("S-EVENT-OUTCOME-FINANCIAL", a_financial_assessment_row(), "event_outcome", A),
    P("S-EVENT-OUTCOME", an_assessment_row(), "event_outcome", M),
    P("S-EVENT-OUTCOME", a_carer_row(), "event_outcome", M),
    P("S-EVENT-OUTCOME", a_service_row(), "event_outcome", M, R1),
    P("S-EVENT-OUTCOME", a_request_row(), "event_outcome", M, R1),
    P("S-EVENT-OUTCOME", a_review_row(), "event_outcome", M, R1),
    # Request
    P("S-ROUTE-REQUEST", a_request_row(), "request_route_of_access", M),
    P("S-ROUTE-REQUEST", a_carer_row(event="request"), "request_route_of_access", M),
    P("S-ROUTE-OTHER", a_service_row(), "request_route_of_access", NA),
    P("S-ROUTE-OTHER", an_assessment_row(), "request_route_of_access", NA),
    # Assessment
    P("S-ASSESSMENT-TYPE-ASSESSMENT", an_assessment_row(), "assessment_type", M),
    P("S-ASSESSMENT-TYPE-OTHER", a_review_row(), "assessment_type", NA),
    P("S-ELIGIBLE-ASSESSMENT", an_assessment_row(), "eligible_needs_identified", A),
    P("S-ELIGIBLE-OTHER", a_request_row(), "eligible_needs_identified", NA),
    P("S-METHOD-ASSESSMENT-FINANCIAL", a_financial_assessment_row(), "method_of_assessment", A),
    P("S-METHOD-ASSESSMENT-ASSESSMENT", an_assessment_row(), "method_of_assessment", M),
    P(
        "S-METHOD-ASSESSMENT-ASSESSMENT",
        an_assessment_row(assessment_type="Short Term Assessment"),
        "method_of_assessment",
        M,
    ),
    P("S-METHOD-ASSESSMENT-OTHER", a_service_row(), "method_of_assessment", NA, R1),
    P("S-METHOD-ASSESSMENT-OTHER", a_request_row(), "method_of_assessment", NA, R1),
    # Carer fields
    *[
        P(f"S-{k}-CARER", row, f, A)
        for k, f in (
            ("HRS-CARING", "total_hrs_caring_per_week"),
            ("NO-ADULTS", "no_of_adults_being_cared_for"),
            ("LINKED-1", "adult_1_linked_person_id"),
            ("LINKED-2", "adult_2_linked_person_id"),
            ("LINKED-3", "adult_3_linked_person_id"),
        )
        for row in (a_carer_row(), a_ckba_row())
    ],
    *[
        P(f"S-{k}-OTHER", a_service_row(), f, NA)
        for k, f in (
            ("HRS-CARING", "total_hrs_caring_per_week"),
            ("NO-ADULTS", "no_of_adults_being_cared_for"),
            ("LINKED-1", "adult_1_linked_person_id"),
            ("LINKED-2", "adult_2_linked_person_id"),
            ("LINKED-3", "adult_3_linked_person_id"),
        )
    ],
    # Service
    *[
        P(f"S-{k}-SERVICE", a_service_row(), f, s)
        for k, f, s in (
            ("SERVICE-TYPE", "service_type", M),
            ("SERVICE-COMPONENT", "service_component", M),
            ("DELIVERY", "delivery_mechanism", A),
            ("CQC-NAME", "provider_cqc_location_name", A),
            ("CQC-ID", "provider_cqc_location_id", A),
        )
    ],
    *[
        P(f"S-{k}-OTHER", a_review_row(), f, NA)
        for k in ("SERVICE-TYPE", "SERVICE-COMPONENT", "DELIVERY", "CQC-NAME", "CQC-ID")
        for f in [
            {
                "SERVICE-TYPE": "service_type",
                "SERVICE-COMPONENT": "service_component",
                "DELIVERY": "delivery_mechanism",
                "CQC-NAME": "provider_cqc_location_name",
                "CQC-ID": "provider_cqc_location_id",
            }[k]
        ]
    ],
    # Review
    P("S-REVIEW-REASON-REVIEW", a_review_row(), "review_reason", M),
    P("S-REVIEW-REASON-OTHER", a_service_row(), "review_reason", NA),
    P("S-METHOD-REVIEW-REVIEW", a_review_row(), "method_of_review", M),
    P("S-METHOD-REVIEW-OTHER", a_request_row(), "method_of_review", NA),
    P("S-REVIEW-OUTCOMES-PLANNED", a_review_row(review_reason="Planned"), "review_outcomes_achieved", M),
    P("S-REVIEW-OUTCOMES-PLANNED", a_carer_row(event="review"), "review_outcomes_achieved", M),
    P(
        "S-REVIEW-OUTCOMES-REVIEW",
        a_review_row(review_reason="Unplanned - Carer related"),
        "review_outcomes_achieved",
        A,
    ),
    P("S-REVIEW-OUTCOMES-REVIEW", a_review_row(R2), "review_outcomes_achieved", A, R2),
    P("S-REVIEW-OUTCOMES-OTHER", a_service_row(), "review_outcomes_achieved", NA),
    # Cost fields: mandatory unless commissioned support, for long-term / carer-support types or short-term
    # residential, nursing or carer-respite components.
    *[
        P(f"{COST_IDS[f]}-{suffix}", row, f, status, rel)
        for f in COST_FIELDS
        for suffix, row, status, rel in (
            ("MANDATORY", _lt_dp(), M, R1),
            ("MANDATORY", _lt_dp(delivery_mechanism="CASSR Managed Personal Budget"), M, R1),
            # DHSC's SQL (NOT LIKE on a NULL is not true): a blank Delivery Mechanism leaves cost fields optional.
            ("SERVICE", _lt_dp(delivery_mechanism=None), A, R1),
            ("MANDATORY", _lt_dp(service_type="Long Term Support: Nursing Care"), M, R1),
            ("MANDATORY", a_carer_row(event="service"), M, R1),
            (
                "MANDATORY",
                _lt_dp(
                    service_type="Short Term Support: Other Short Term", service_component="Short Term Residential Care"
                ),
                M,
                R1,
            ),
            (
                "MANDATORY",
                _lt_dp(
                    service_type="Short Term Support: Other Short Term", service_component="Short Term Nursing Care"
                ),
                M,
                R1,
            ),
            ("MANDATORY", _lt_dp(service_type="Short Term Support: ST-Max", service_component="Carer Respite"), M, R1),
            ("MANDATORY", a_service_row(R2), M, R2),
            ("SERVICE", _lt_dp(delivery_mechanism="CASSR Commissioned Support"), A, R1),
            (
                "SERVICE",
                _lt_dp(
                    delivery_mechanism="CASSR Commissioned Support", service_component="Short Term Residential Care"
                ),
                A,
                R1,
            ),
            ("SERVICE", _lt_dp(service_type="Short Term Support: ST-Max", service_component="Home Support"), A, R1),
            ("SERVICE", a_service_row(R2, delivery_mechanism="CASSR commissioned support"), A, R2),
            ("OTHER", a_request_row(), NA, R1),
            ("OTHER", a_review_row(), NA, R1),
        )
    ],
]

# ---- generated from the spec data: unconditional single-case fields and the CKBA cases ----
_ROWS_BY_CLIENT = {
    "service user": a_service_row,
    "carer": a_carer_row,
    "ckba": a_ckba_row,
}
GENERATED: list[Any] = []
for _f in SPEC.fields:
    if len(_f.status) == 1 and _f.status[0].when is None:
        for _label, _build in _ROWS_BY_CLIENT.items():
            for _rel in Release:
                GENERATED.append(
                    pytest.param(
                        _f.status[0].id,
                        _build(_rel),
                        _f.name,
                        _f.status[0].status,
                        _rel,
                        id=f"{_f.status[0].id}:{_label}:{_rel.value}",
                    )
                )
    for _c in _f.status:
        if _c.when == CKBA_WHEN:
            for _rel in Release:
                GENERATED.append(pytest.param(_c.id, a_ckba_row(_rel), _f.name, NA, _rel, id=f"{_c.id}:{_rel.value}"))


@pytest.mark.parametrize(("case_id", "row", "field", "expected", "release"), STATUS_TABLE + GENERATED)
def test_status(case_id: str, row: Row, field: str, expected: FieldStatus, release: Release) -> None:
    assert status_of(row, field, release) is expected


def _mandatory_params() -> list[Any]:
    out = []
    for p in STATUS_TABLE + GENERATED:
        case_id, row, field, expected, release = p.values
        if expected is M and not p.marks:
            out.append(pytest.param(case_id, row, field, release, id=p.id))
    return out


@pytest.mark.parametrize(("case_id", "row", "field", "release"), _mandatory_params())
def test_blank_mandatory_field_reports_the_deciding_status_rule(
    case_id: str, row: Row, field: str, release: Release
) -> None:
    result = validate_record({**row, field: None}, release=release)
    mine = [f for f in result.findings if f.name == field]
    assert [(f.header, f.rule, f.status, f.validity) for f in mine] == [
        (SPEC.field(field).header, case_id, M, Validity.BLANK_MANDATORY)
    ]
    assert "(R-" in mine[0].message  # cites the rules.md source of the status rule


def test_every_status_case_of_every_field_is_exercised() -> None:
    covered = {p.values[0] for p in STATUS_TABLE + GENERATED}
    every = {c.id for f in SPEC.fields for c in f.status}
    assert every - covered == set()
    assert covered - every == set()


# ---- Undetermined: a deciding value is blank or not known ----
UNDETERMINED: list[Any] = [
    pytest.param(a_service_row(client_type=None), f, R1, id=f"client-type-blank:{f}")
    for f in (
        "primary_support_reason",
        "event_type",
        "autism_spectrum_disorder_asd",
        "client_funding_status",
        "total_hrs_caring_per_week",
        "service_type",
        "unit_cost",
        "event_end_date",
    )
] + [
    pytest.param(a_service_row(client_type="Martian"), "event_type", R1, id="client-type-unknown-value"),
    pytest.param(a_service_row(R2, client_type="Client"), "event_start_date", R2, id="client-type-unknown-r2"),
    pytest.param(a_service_row(event_type=None), "primary_support_reason", R1, id="event-type-blank:psr"),
    pytest.param(a_service_row(event_type=None), "service_type", R1, id="event-type-blank:service-type"),
    pytest.param(a_service_row(event_type=None), "event_end_date", R1, id="event-type-blank:end-date"),
    pytest.param(a_service_row(event_type="Referral"), "request_route_of_access", R1, id="event-type-unknown"),
    pytest.param(
        a_service_row(primary_support_reason=LD, date_of_birth=None), "employment_status", R1, id="dob-blank:employment"
    ),
    pytest.param(
        a_service_row(primary_support_reason=LD, date_of_birth="1990-01-01"),
        "employment_status",
        R1,
        id="dob-invalid:employment",
    ),
    pytest.param(
        a_service_row(primary_support_reason=LD, reporting_period_end_date=None),
        "employment_status",
        R1,
        id="period-end-blank:employment",
    ),
    pytest.param(
        a_service_row(primary_support_reason=None, date_of_birth="01/01/1990"),
        "employment_status",
        R1,
        id="psr-blank:employment",
    ),
    pytest.param(
        a_service_row(client_type=None, primary_support_reason=LD, date_of_birth="01/01/1990"),
        "employment_status",
        R1,
        id="client-type-blank:employment",
    ),
    pytest.param(
        an_assessment_row(R2, assessment_type="Conversation assessment"),
        "method_of_assessment",
        R2,
        id="r2-assessment-type-unknown:method",
    ),
    pytest.param(
        an_assessment_row(R2, assessment_type="Conversation assessment"),
        "event_outcome",
        R2,
        id="r2-assessment-type-unknown:outcome",
    ),
    pytest.param(
        an_assessment_row(R2, assessment_type="Conversation assessment"),
        "client_funding_status",
        R2,
        id="r2-assessment-type-unknown:funding",
    ),
    pytest.param(
        a_review_row(R2, review_reason="Planned review of long term support"),
        "review_outcomes_achieved",
        R2,
        id="r2-review-reason-unknown",
    ),
    pytest.param(_lt_dp(service_type=None, service_component=None), "unit_cost", R1, id="type-and-component-blank"),
]


@pytest.mark.parametrize(("row", "field", "release"), UNDETERMINED)
def test_undetermined_when_a_deciding_value_is_blank_or_unknown(row: Row, field: str, release: Release) -> None:
    result = validate_record(row, release=release)
    i = ORDERED.index(field)
    assert result.statuses[i] is U
    # Undetermined never fails a blank field on its own.
    blank = validate_record({**row, field: None}, release=release)
    assert blank.validities[i] is Validity.BLANK_NOT_MANDATORY
    assert not [f for f in blank.findings if f.name == field]


def test_undetermined_is_decided_by_the_first_unknown_case() -> None:
    """An unknown earlier case wins over a later unconditional one (no guessing past an unknown)."""
    assert status_of(a_request_row(client_type=None), "primary_support_reason") is U
    assert status_of(a_request_row(), "primary_support_reason") is A


def test_release_1_value_still_decides_status_in_a_release_2_file() -> None:
    """The intent of an outdated value is clear: it fails (Release 1) but still decides the statuses."""
    row = a_service_row(R2, client_type="Service User", event_type="Service")
    result = validate_record(row, release=R2)
    assert result.statuses[ORDERED.index("service_type")] is M
    assert [(f.name, f.rule) for f in result.findings] == [("client_type", "CLD003")]


def test_case_difference_still_decides_status() -> None:
    result = validate_record(a_review_row(event_type="review"), release=R1)
    assert result.statuses[ORDERED.index("review_reason")] is M
    assert [(f.name, f.rule) for f in result.findings] == [("event_type", "CLD004")]


@pytest.mark.parametrize(
    ("status", "blank_validity"),
    [(M, Validity.BLANK_MANDATORY), (A, Validity.BLANK_NOT_MANDATORY), (NA, Validity.BLANK_NOT_MANDATORY)],
)
def test_blank_validity_follows_status(status: FieldStatus, blank_validity: Validity) -> None:
    row = a_service_row()
    field = {M: "service_type", A: "event_description", NA: "request_route_of_access"}[status]
    result: RowResult = validate_record({**row, field: None}, release=R1)
    i = ORDERED.index(field)
    assert (result.statuses[i], result.validities[i]) == (status, blank_validity)


def test_value_in_not_applicable_field_is_not_a_finding() -> None:
    """Only carer fields on service-user rows and event fields on CKBA rows are cross-field failures."""
    row = a_service_row(request_route_of_access="Prison", review_reason="Planned")
    result = validate_record(row, release=R1)
    assert result.findings == []
    assert result.statuses[ORDERED.index("request_route_of_access")] is NA
