"""Builders of complete, valid synthetic CLD rows (dicts of spec field name to value, None when blank).

Every builder returns a row that ``validate_record`` passes with no findings for the given release; pass
keyword overrides (spec snake_case field names; ``None`` blanks a field) to make the one change a test is
about. A misspelt override name raises ``KeyError`` so a typo cannot silently test nothing.

Synthetic data only: NHS numbers come from the 999 range (never issued), names and identifiers are made up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from cld_schemas.spec import Release, load_spec

Row = dict[str, str | None]
EventKind = Literal["request", "assessment", "service", "review"]

RP_START = "01/04/2024"
RP_END = "31/03/2025"
"""The reporting period every builder uses (dd/mm/yyyy)."""

LA_CODE = "318"


def nhs_check_digit(first_nine: str) -> int | None:
    """Modulus 11 check digit for nine digits (weights 10..2), or None when the remainder makes it 10."""
    if len(first_nine) != 9 or not all(c in "0123456789" for c in first_nine):
        raise ValueError("nine ASCII digits expected")
    total = sum(int(c) * w for c, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def synthetic_nhs_number(seq: int = 0) -> str:
    """The ``seq``-th valid NHS number of the synthetic 999 range (999 000 0000 upwards)."""
    found = -1
    for n in range(1_000_000):
        nine = f"999{n:06d}"
        check = nhs_check_digit(nine)
        if check is None:
            continue
        found += 1
        if found == seq:
            return f"{nine}{check}"
    raise ValueError("seq out of range")


def synthetic_nhs_number_with_remainder_10() -> str:
    """Nine 999-range digits whose check digit would be 10 (so no tenth digit can make them valid), plus '0'."""
    for n in range(1_000_000):
        nine = f"999{n:06d}"
        if nhs_check_digit(nine) is None:
            return f"{nine}0"
    raise AssertionError("unreachable")


def blank_row() -> Row:
    """Every spec field, blank."""
    return dict.fromkeys((f.name for f in load_spec().fields), None)


def code_value(field: str, key: str, release: Release) -> str:
    """The spec's wording of a coded value (by its release-independent key) in a release."""
    cl = load_spec().field(field).code_list(release)
    if cl is not None:
        for v in cl.values:
            if v.key == key:
                return v.value
    raise KeyError(f"{field}: no value with key {key!r} in {release.value}")


def _apply(row: Row, overrides: Mapping[str, str | None]) -> Row:
    for name, value in overrides.items():
        if name not in row:
            raise KeyError(f"not a spec field name: {name!r}")
        row[name] = value
    return row


def _person(release: Release, client: str) -> Row:
    row = blank_row()
    row.update(
        la_code=LA_CODE,
        reporting_period_start_date=RP_START,
        reporting_period_end_date=RP_END,
        nhs_number=synthetic_nhs_number(0),
        la_person_unique_identifier="SYN-PERSON-0001",
        first_name="Synthetic",
        last_name="Testperson",
        gp_practice_name="Synthetic Surgery",
        gp_practice_code="A12345",
        gender=code_value("gender", "male", release),
        ethnicity=code_value("ethnicity", "white_english_welsh_scottish_northern_irish_or_british", release),
        date_of_birth="15/06/1950",
        client_type=code_value("client_type", client, release),
        postcode="LS1 4AP",
        accommodation_status=code_value("accommodation_status", "owner_occupier_or_shared_ownership_scheme", release),
        employment_status=code_value("employment_status", "unknown", release),
        has_unpaid_carer=code_value("has_unpaid_carer", "no", release),
    )
    return row


_OUTCOME: dict[EventKind, str] = {
    "request": "progress_to_assessment_review_or_reassessment",
    "assessment": "progress_to_support_planning_or_services",
    "service": "continuation_of_support_or_services",
    "review": "continuation_of_support_or_services",
}


def _event(row: Row, release: Release, event: EventKind, *, carer: bool) -> Row:
    r1 = release is Release.R1
    row.update(
        event_type=code_value("event_type", event, release),
        event_reference=f"SYN-EVT-{event.upper()}-1",
        event_start_date="01/05/2024",
        event_end_date="20/05/2024",
        event_description="Synthetic event",
        event_outcome=code_value("event_outcome", _OUTCOME[event], release),
    )
    if not carer:
        row["client_funding_status"] = code_value("client_funding_status", "fully_social_care_funded", release)
    if event == "request":
        # Release 2 route-of-access list is not public: a plausible value, counted as unchecked.
        row["request_route_of_access"] = "Community / Other route" if r1 else "Community or other route"
        if not carer:
            row["primary_support_reason"] = None  # applicable only on requests
    elif event == "assessment":
        row["assessment_type"] = code_value("assessment_type", "long_term", release)
        row["method_of_assessment"] = "Face to face"  # list unknown in both releases: unchecked
    elif event == "service":
        row.update(
            event_end_date=None,
            service_type=code_value(
                "service_type",
                "unpaid_carer_support_direct_to_unpaid_carer" if carer else "long_term_support_community",
                release,
            ),
            service_component=code_value("service_component", "carer_respite" if carer else "home_support", release)
            if (r1 or not carer)
            else "Unpaid carer respite",
            delivery_mechanism=code_value("delivery_mechanism", "direct_payment", release),
            provider_cqc_location_name="Synthetic Care Ltd",
            provider_cqc_location_id="1-123456789",
            unit_cost="250.00",
            cost_frequency_unit_type="Weekly",  # list unknown: unchecked
            planned_units_per_week="1.00",
        )
    else:  # review
        if r1:
            row["review_reason"] = code_value("review_reason", "planned", release)
            row["review_outcomes_achieved"] = code_value("review_outcomes_achieved", "fully_met", release)
            row["method_of_review"] = code_value("method_of_review", "service_user_only", release)
        else:
            row["review_reason"] = code_value("review_reason", "review_of_short_term_support", release)
            row["review_outcomes_achieved"] = "Fully met"  # Release 2 list unknown: unchecked
            row["method_of_review"] = "Service user only"  # Release 2 list unknown: unchecked
    return row


def a_service_user_row(
    release: Release = Release.R1, /, *, event: EventKind = "service", **overrides: str | None
) -> Row:
    """A service user with one event (a long-term community service paid by direct payment by default)."""
    row = _person(release, "service_user")
    row["primary_support_reason"] = (
        code_value("primary_support_reason", "physical_support_personal_care_support", release)
        if release is Release.R1
        else code_value("primary_support_reason", "unknown", release)
    )
    return _apply(_event(row, release, event, carer=False), overrides)


def a_request_row(release: Release = Release.R1, /, **overrides: str | None) -> Row:
    return a_service_user_row(release, event="request", **overrides)


def an_assessment_row(release: Release = Release.R1, /, **overrides: str | None) -> Row:
    return a_service_user_row(release, event="assessment", **overrides)


def a_service_row(release: Release = Release.R1, /, **overrides: str | None) -> Row:
    return a_service_user_row(release, event="service", **overrides)


def a_review_row(release: Release = Release.R1, /, **overrides: str | None) -> Row:
    return a_service_user_row(release, event="review", **overrides)


def a_financial_assessment_row(**overrides: str | None) -> Row:
    """Release 1 only: the Release 2 wording of 'Financial Assessment' is not public."""
    row = an_assessment_row(Release.R1, assessment_type="Financial Assessment", event_outcome=None)
    return _apply(row, overrides)


def _carer_details(row: Row) -> Row:
    row.update(
        total_hrs_caring_per_week="35",
        no_of_adults_being_cared_for="1",
        adult_1_linked_person_id="SYN-PERSON-0002",
    )
    return row


def a_carer_row(release: Release = Release.R1, /, *, event: EventKind = "assessment", **overrides: str | None) -> Row:
    """An unpaid carer with one event of their own (a long-term carer's assessment by default)."""
    row = _carer_details(_person(release, "carer"))
    row["primary_support_reason"] = code_value("primary_support_reason", "support_to_carer", release)
    return _apply(_event(row, release, event, carer=True), overrides)


def a_ckba_row(release: Release = Release.R1, /, **overrides: str | None) -> Row:
    """A 'Carer known by association': person and carer details only, no event details."""
    row = _carer_details(_person(release, "carer_known_by_association"))
    return _apply(row, overrides)
