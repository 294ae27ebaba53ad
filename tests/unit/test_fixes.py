"""Every failure carries a fix an analyst can act on, never quoting a personal value (issue 13, item 3)."""

from __future__ import annotations

from datetime import date

import pytest

from cld_schemas.spec import Release, load_spec
from cld_synth import generate_rows
from cld_validation.fixes import NO_AUTOMATIC_FIX, quotable
from cld_validation.rules import FieldFinding, validate_record
from tests.support.builders import a_request_row, a_review_row, a_service_row

SPEC = load_spec()


def _only(row: dict[str, str | None], release: Release, field: str) -> FieldFinding:
    found = [f for f in validate_record(row, release=release).findings if f.name == field]
    assert len(found) == 1, found
    return found[0]


def test_an_iso_event_date_gets_the_rewritten_date() -> None:
    fnd = _only(a_service_row(Release.R2, event_start_date="2025-10-01"), Release.R2, "event_start_date")
    assert fnd.rule == "CLD010"
    assert fnd.fix == "Write 01/10/2025 (dd/mm/yyyy), not '2025-10-01'."


def test_an_iso_date_of_birth_gets_the_shape_but_never_the_value() -> None:
    fnd = _only(a_service_row(Release.R2, date_of_birth="1961-02-13"), Release.R2, "date_of_birth")
    assert "yyyy-mm-dd" in fnd.fix
    assert "1961" not in fnd.fix
    assert "13/02" not in fnd.fix


def test_a_capitalisation_slip_names_the_defined_value() -> None:
    fnd = _only(a_service_row(Release.R2, gender="female"), Release.R2, "gender")
    assert fnd.rule == "CLD004"
    assert fnd.fix == "'female' -> 'Female'"


def test_a_release_1_label_names_its_release_2_wording() -> None:
    row = a_service_row(Release.R2, client_type="Carer")
    fnd = _only(row, Release.R2, "client_type")
    assert fnd.rule == "CLD003"
    assert fnd.fix == "Release 1 label 'Carer' is 'Unpaid carer' in Release 2."


def test_a_request_without_an_end_date_says_add_it_or_leave_it_out() -> None:
    fnd = _only(a_request_row(Release.R2, event_end_date=None), Release.R2, "event_end_date")
    assert fnd.fix == "Event End Date is required for a Request: add it, or leave the event out until it ends."


def test_an_unknown_code_suggests_the_closest_value_without_quoting_the_input() -> None:
    fnd = _only(a_service_row(Release.R2, gender="Femail"), Release.R2, "gender")
    assert fnd.rule == "CLD002"
    assert "'Female'" in fnd.fix
    assert "Femail" not in fnd.fix


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        ({"nhs_number": "999 000 0018"}, "nhs_number", "Remove the spaces"),
        ({"nhs_number": "9990000019"}, "nhs_number", "no automatic fix known"),
        ({"postcode": "LS1  4AP"}, "postcode", "capitals with one space"),
        ({"unit_cost": "1,234.50"}, "unit_cost", "'1234.50'"),
        ({"unit_cost": "12.345"}, "unit_cost", "'12.35'"),
        ({"event_start_date": "31/02/2025"}, "event_start_date", "does not exist"),
        ({"event_start_date": "01/10/2025 00:00:00"}, "event_start_date", "Remove the time: write '01/10/2025'"),
        ({"date_of_birth": "13/02/1961 00:00:00"}, "date_of_birth", "Remove the time after the date"),
        ({"event_start_date": "1/10/2025"}, "event_start_date", "Write 01/10/2025"),
        ({"event_start_date": "12/13/2025"}, "event_start_date", "swapped"),
        ({"provider_cqc_location_id": "123456789"}, "provider_cqc_location_id", "'1-123456789'"),
    ],
)
def test_format_failures_carry_a_specific_fix(overrides: dict[str, str | None], field: str, expected: str) -> None:
    fnd = _only(a_service_row(Release.R2, **overrides), Release.R2, field)
    assert expected in fnd.fix


def test_cross_field_failures_carry_a_fix() -> None:
    row = a_review_row(Release.R2, event_start_date="10/10/2024", event_end_date="01/10/2024")
    fnd = _only(row, Release.R2, "event_end_date")
    assert fnd.rule == "XF001"
    assert fnd.fix
    assert fnd.fix != NO_AUTOMATIC_FIX


def test_personal_and_free_text_fields_are_never_quotable() -> None:
    never = {f.name for f in SPEC.fields if not quotable(f)}
    assert {"nhs_number", "first_name", "last_name", "date_of_birth", "date_of_death", "postcode"} <= never
    assert {"event_description", "la_person_unique_identifier", "gp_practice_name"} <= never
    assert "gender" not in never


@pytest.mark.parametrize("release", list(Release))
def test_every_injected_error_gets_a_fix_that_quotes_no_personal_value(release: Release) -> None:
    personal = {f.name for f in SPEC.fields if not quotable(f)}
    seen_rules: set[str] = set()
    for row, _errors in generate_rows(
        people=150, seed=21, period_end=date(2026, 3, 31), release=release, error_rate=0.6
    ):
        for fnd in validate_record(row, release=release).findings:
            seen_rules.add(fnd.rule)
            assert fnd.fix, f"{fnd.rule} on {fnd.name} has no fix"
            for name in personal:
                value = row.get(name)
                if value and len(value) >= 4:
                    assert value not in fnd.fix, f"{name} value quoted in a {fnd.rule} fix"
    assert {"CLD010", "CLD011", "CLD021", "CLD030"} <= seen_rules  # the file exercised the date/NHS/postcode fixes


@pytest.mark.parametrize("value", ["INF", "-inf", "nan", "Infinity"])
def test_infinity_and_nan_in_a_whole_number_field_get_the_general_fix_not_an_error(value: str) -> None:
    from cld_validation.fixes import number_fix

    whole = next(f for f in SPEC.fields if f.name == "no_of_adults_being_cared_for")
    assert number_fix(whole, value, "CLD041") == f"Write a whole number of 0 or more in {whole.header}."
