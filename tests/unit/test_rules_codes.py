"""Coded fields: exact values pass, case differences and other-release values fail the right way, values of
lists that are not known well enough are counted as unchecked and never failed."""

from __future__ import annotations

from typing import Any

import pytest

from cld_schemas.spec import Release, Validity, load_spec
from cld_validation.rules import RowResult, validate_record
from tests.support.builders import a_service_row

SPEC = load_spec()
ORDERED = [f.name for f in sorted(SPEC.fields, key=lambda f: f.order)]
R1, R2 = Release.R1, Release.R2
CODED = [f for f in SPEC.fields if f.format == "code"]


def check(field: str, value: str, release: Release) -> tuple[RowResult, list[tuple[str, Validity]]]:
    result = validate_record(a_service_row(release, **{field: value}), release=release)
    mine = [(f.rule, f.validity) for f in result.findings if f.name == field]
    return result, mine


def _values(enforced_only: bool) -> list[Any]:
    out = []
    for f in CODED:
        for rel in Release:
            cl = f.code_list(rel)
            if cl is None or (enforced_only and not cl.completeness.enforced):
                continue
            for v in cl.values:
                out.append(pytest.param(f.name, v.value, rel, id=f"{rel.value}:{f.name}:{v.value}"))
    return out


@pytest.mark.parametrize(("field", "value", "release"), _values(enforced_only=False))
def test_every_defined_value_passes_exactly(field: str, value: str, release: Release) -> None:
    result, mine = check(field, value, release)
    assert mine == []
    assert result.validities[ORDERED.index(field)] is Validity.VALID
    assert field not in result.unchecked


def _case_variants() -> list[Any]:
    out = []
    for p in _values(enforced_only=True):
        field, value, rel = p.values
        variant = value.swapcase()
        if variant == value:
            continue
        out.append(pytest.param(field, value, variant, rel, id=p.id))
    return out


@pytest.mark.parametrize(("field", "defined", "variant", "release"), _case_variants())
def test_case_difference_is_invalid_cld004_and_names_the_defined_value(
    field: str, defined: str, variant: str, release: Release
) -> None:
    result, mine = check(field, variant, release)
    assert mine == [("CLD004", Validity.INVALID)]
    message = next(f.message for f in result.findings if f.name == field)
    assert f"'{defined}'" in message
    assert SPEC.releases[release].label in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ethnicity", "White  -  Irish"),
        ("ethnicity", " white - irish "),
        ("event_type", "SERVICE"),
        ("gender", "fEMALE"),
    ],
)
def test_spacing_and_case_differences_are_cld004_in_release_1(field: str, value: str) -> None:
    assert check(field, value, R1)[1] == [("CLD004", Validity.INVALID)]


def _release_1_values_in_release_2() -> list[Any]:
    """R1 values whose meaning has different R2 wording, or which an enforced R2 list lacks."""
    out = []
    for f in CODED:
        r1, r2 = f.code_list(R1), f.code_list(R2)
        if r1 is None or r2 is None:
            continue
        r2_values = {v.value for v in r2.values}
        r2_keys = {v.key for v in r2.values}
        for v in r1.values:
            if v.value in r2_values:
                continue
            if v.key in r2_keys or r2.completeness.enforced:
                out.append(pytest.param(f.name, v.value, id=f"{f.name}:{v.value}"))
    return out


def test_release_1_value_cases_exist() -> None:
    names = {p.values[0] for p in _release_1_values_in_release_2()}
    assert {"ethnicity", "client_type", "event_outcome", "service_type", "delivery_mechanism"} <= names


@pytest.mark.parametrize(("field", "value"), _release_1_values_in_release_2())
def test_release_1_value_in_release_2_file_is_failed_release_1(field: str, value: str) -> None:
    result, mine = check(field, value, R2)
    assert mine == [("CLD003", Validity.RELEASE_1)]
    assert result.validities[ORDERED.index(field)] is Validity.RELEASE_1


def test_release_1_ethnicity_in_release_2_file() -> None:
    result, mine = check("ethnicity", "White - Irish", R2)
    assert mine == [("CLD003", Validity.RELEASE_1)]
    finding = result.findings[0]
    assert (finding.header, finding.validity.value) == ("Ethnicity", "Failed: Release 1")


def test_release_1_value_with_release_2_key_in_partial_list_is_release_1() -> None:
    """The R2 PSR list is partial, but the R1 wording of a meaning it does hold is certainly outdated."""
    assert check("primary_support_reason", "Social Support: Support to Carer", R2)[1] == [
        ("CLD003", Validity.RELEASE_1)
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ethnicity", "White: Irish"),
        ("accommodation_status", "Tenant: Private landlord"),
        ("employment_status", "Not in paid employment: Seeking work"),
        ("event_outcome", "Continuation of support or services"),
        ("service_type", "Unpaid carer support: Direct to unpaid carer"),
    ],
)
def test_release_2_value_in_release_1_file_is_cld002_with_hint(field: str, value: str) -> None:
    result, mine = check(field, value, R1)
    assert mine == [("CLD002", Validity.INVALID)]
    message = next(f.message for f in result.findings if f.name == field)
    assert "Release 2 value" in message
    assert "is this a Release 2 file?" in message


def test_value_in_neither_release_is_cld002_without_hint() -> None:
    result, mine = check("ethnicity", "Not an ethnicity", R1)
    assert mine == [("CLD002", Validity.INVALID)]
    message = result.findings[0].message
    assert "Release 2" not in message
    assert "Release 1 defined list" in message
    assert "list complete" in message


def test_release_2_value_differing_only_in_case_from_release_1_is_cld004_in_r1() -> None:
    assert check("assessment_type", "Long term assessment", R1)[1] == [("CLD004", Validity.INVALID)]


@pytest.mark.parametrize(
    ("field", "value", "release"),
    [
        ("hearing_impairment", "Deaf with speech", R1),
        ("hearing_impairment", "Anything at all", R2),
        ("dementia", "Yes", R1),
        ("autism_spectrum_disorder_asd", "No", R2),
        ("cost_frequency_unit_type", "Weekly", R1),
        ("cost_frequency_unit_type", "per fortnight (made up)", R2),
        ("primary_support_reason", "Learning disability support", R2),
        ("primary_support_reason", "unknown", R2),  # case variant of a partial list's value: still not failed
        ("service_component", "Day support", R1),
        ("service_component", "Nonsense component", R2),
        ("client_funding_status", "Unknown", R2),
        ("review_reason", "Planned review of long term support", R2),
        ("request_route_of_access", "Hospital", R2),
        ("method_of_review", "Carer only", R2),
        ("visual_impairment", "Blind", R2),
    ],
)
def test_values_of_partial_or_unknown_lists_are_unchecked_never_failed(
    field: str, value: str, release: Release
) -> None:
    cl = SPEC.field(field).code_list(release)
    assert cl is not None
    assert not cl.completeness.enforced
    result, mine = check(field, value, release)
    assert mine == []
    assert result.unchecked.count(field) == 1
    assert result.validities[ORDERED.index(field)] is Validity.VALID


def test_only_enforced_lists_fail_values() -> None:
    """Every field with a partial or unknown list never fails an unknown value, in either release."""
    for f in CODED:
        for rel in Release:
            cl = f.code_list(rel)
            if cl is not None and not cl.completeness.enforced:
                result, mine = check(f.name, "Certainly not a defined value 12345", rel)
                assert mine == [], (f.name, rel)
                assert f.name in result.unchecked


def test_enforced_list_fails_unknown_value_and_does_not_count_it_unchecked() -> None:
    result, mine = check("gender", "Not a gender", R2)
    assert mine == [("CLD002", Validity.INVALID)]
    assert "gender" not in result.unchecked
