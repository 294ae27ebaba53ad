"""No value from a row ever appears in a finding (rules.md section 4: identifying values are 'N/A - PID').

Rows carry distinctive synthetic values that fail in every way the validator knows; every finding's message
(and its whole repr) must be free of every input value.
"""

from __future__ import annotations

import dataclasses

import pytest

from cld_schemas.spec import Release, load_spec
from cld_validation.fixes import quotable
from cld_validation.rules import MAX_TEXT_LENGTH, FieldFinding, validate_record
from tests.support.builders import Row, a_ckba_row, a_review_row, a_service_row

SPEC = load_spec()
PII_FIELDS = {f.name for f in SPEC.fields if f.pii}
SPEC_CODE_VALUES = {v.value for f in SPEC.fields for cl in (f.code_lists or {}).values() for v in cl.values}
"""The specification's own code values are not personal data: messages may quote them."""


SPEC_CODE_VALUES_FOLDED = {" ".join(v.casefold().split()) for v in SPEC_CODE_VALUES}
QUOTABLE = {f.name for f in SPEC.fields if quotable(f)}
"""Fields whose non-personal values a fix may quote (a date to rewrite, 'female' -> 'Female')."""


def _assert_clean(row: Row, result_findings: list[FieldFinding]) -> None:
    assert result_findings, "the row was meant to fail"
    for finding in result_findings:
        text = repr(dataclasses.replace(finding, fix=""))
        assert finding.fix, f"{finding.rule} finding has no fix text"
        for name, value in row.items():
            if not value or len(value) < 4 or value in SPEC_CODE_VALUES:
                continue
            assert value not in text, f"{name} value leaked into a {finding.rule} finding"
            if name in PII_FIELDS:
                assert value.casefold() not in text.casefold(), f"{name} value leaked (case-folded)"
                assert value.casefold() not in finding.fix.casefold(), f"{name} value leaked into a fix"
            fmt = SPEC.field(name).format
            spec_like = " ".join(value.casefold().split()) in SPEC_CODE_VALUES_FOLDED
            if name not in QUOTABLE or (fmt == "code" and not spec_like):
                assert value not in finding.fix, f"{name} value leaked into a {finding.rule} fix"


FAILING_PERSON_VALUES: list[dict[str, str | None]] = [
    # identifiers and names that fail length, NHS numbers that fail format and check digit
    {"nhs_number": "9990000019", "first_name": "Zebediah" * 600, "last_name": "Quillfeather" * 400},
    {"nhs_number": "999 000 0018", "la_person_unique_identifier": "LAPID-77" * 600},
    {"nhs_number": "9990000018X", "postcode": "QZ99 9QQX"},
    {"nhs_number": "99900000", "postcode": "zz9x 9zzz"},
    # dates of birth / death that fail format, calendar and cross-field rules
    {"date_of_birth": "31/02/1961", "date_of_death": "1961-03-01"},
    {"date_of_birth": "1961-02-13", "date_of_death": "13.02.1961"},
    {"date_of_birth": "13/02/1961", "date_of_death": "12/02/1961", "event_end_date": "12/02/1961"},
    {"date_of_birth": "13/02/1961", "date_of_death": "30/04/2024"},  # event starts after death (XF007)
    # coded fields with personal-looking free text, case variants, other-release values
    {"ethnicity": "Zorblaxian heritage of Zebediah", "gender": "mALE", "client_type": "service user"},
    {"accommodation_status": "Lives at 12 Quillfeather Lane QZ99 9QQ", "employment_status": "Quillfeather & Co"},
    # carer fields on a service-user row, with distinctive linked ids
    {
        "adult_1_linked_person_id": "LINKED-ZEB-55123",
        "adult_2_linked_person_id": "LINKED-QUILL-88",
        "no_of_adults_being_cared_for": "two-Zebediahs",
    },
    # numbers and codes
    {
        "unit_cost": "£1,234.567",
        "planned_units_per_week": "Zeb-12.5",
        "la_code": "QZ9",
        "gp_practice_code": "zz99999",
        "provider_cqc_location_id": "1-ZEBEDIAH",
    },
    # mandatory values blanked next to distinctive ones
    {"nhs_number": None, "date_of_birth": None, "postcode": None, "first_name": "Zebediah-Only"},
    # over-long free text full of identifiers
    {"event_description": ("Zebediah Quillfeather 9990000018 QZ99 9QQ 13/02/1961 " * 200)[: MAX_TEXT_LENGTH + 50]},
]


@pytest.mark.parametrize("release", list(Release))
@pytest.mark.parametrize("overrides", FAILING_PERSON_VALUES)
def test_no_input_value_in_any_finding(overrides: dict[str, str | None], release: Release) -> None:
    row = a_review_row(release, **overrides)
    _assert_clean(row, validate_record(row, release=release).findings)


@pytest.mark.parametrize("release", list(Release))
def test_no_input_value_on_ckba_row_with_event_details(release: Release) -> None:
    row = a_ckba_row(
        release,
        first_name="Xanthippe",
        nhs_number="9990000027",
        event_description="Xanthippe visited 12 Quillfeather Lane",
        event_reference="REF-XANTHIPPE-9990000018",
        event_start_date="14/07/2024",
        provider_cqc_location_name="Quillfeather Care of Xanthippe",
        date_of_birth="30/02/1977",
    )
    _assert_clean(row, validate_record(row, release=release).findings)


def test_every_field_failing_at_once_leaks_nothing() -> None:
    """One row where every field holds a distinctive invalid (or out-of-place) value."""
    row = a_service_row()
    for f in SPEC.fields:
        row[f.name] = f"ZQX-{f.name}-7719-" + ("z" * (MAX_TEXT_LENGTH if f.format in ("text", "identifier") else 0))
    result = validate_record(row, release=Release.R1)
    assert len(result.findings) >= len([f for f in SPEC.fields if f.format not in ("unknown",)]) - 10
    _assert_clean(row, result.findings)
