"""Value formats: dates, NHS numbers, postcodes, 2-dp decimals, integers, LA / ODS / CQC codes, length."""

from __future__ import annotations

import pytest

from cld_schemas.spec import Release, Validity, load_spec
from cld_validation.rules import MAX_TEXT_LENGTH, RowResult, nhs_check_digit_ok, validate_record
from tests.support.builders import (
    a_carer_row,
    a_service_row,
    nhs_check_digit,
    synthetic_nhs_number,
    synthetic_nhs_number_with_remainder_10,
)

SPEC = load_spec()
R1 = Release.R1


def run(field: str, value: str | None, *, carer: bool = False) -> tuple[RowResult, list[tuple[str, Validity]]]:
    row = a_carer_row() if carer else a_service_row()
    result = validate_record({**row, field: value}, release=R1)
    return result, [(f.rule, f.validity) for f in result.findings if f.name == field]


def rules_for(field: str, value: str | None, *, carer: bool = False) -> list[str]:
    return [r for r, _ in run(field, value, carer=carer)[1]]


# ---- dates ----
DATE_FIELDS = ["date_of_birth", "event_start_date", "reporting_period_start_date"]


@pytest.mark.parametrize(
    "value", ["15/06/1950", "29/02/2000", "29/02/1952", "28/02/1951", "31/12/1899", "30/04/1950", "01/01/1900"]
)
def test_real_dates_pass(value: str) -> None:
    assert rules_for("date_of_birth", value) == []


@pytest.mark.parametrize(
    "value",
    [
        "1/6/1950",
        "15-06-1950",
        "1950/06/15",
        "1950-06-15",
        "15/06/50",
        "15/06/1950 00:00:00",
        "15/06/1950T00:00",
        " 15/06/1950",
        "15/06/1950 ",
        "15061950",
        "15 June 1950",
        "aa/bb/cccc",
        "15/06/-950",
    ],
)
@pytest.mark.parametrize("field", DATE_FIELDS)
def test_dates_not_written_dd_mm_yyyy_are_cld010(field: str, value: str) -> None:
    assert rules_for(field, value) == ["CLD010"]


@pytest.mark.parametrize(
    "value",
    [
        "29/02/1900",
        "29/02/1951",
        "30/02/2000",
        "31/04/1950",
        "32/01/1950",
        "00/01/1950",
        "01/13/1950",
        "01/00/1950",
        "01/01/0000",
    ],
)
@pytest.mark.parametrize("field", DATE_FIELDS)
def test_impossible_calendar_dates_are_cld011(field: str, value: str) -> None:
    assert rules_for(field, value) == ["CLD011"]


def test_date_messages_name_the_field_and_rule() -> None:
    result, _ = run("event_start_date", "2024-05-01")
    (f,) = [f for f in result.findings if f.name == "event_start_date"]
    assert f.message == "Event Start Date is not written dd/mm/yyyy."
    result, _ = run("event_start_date", "31/06/2024")
    (f,) = [f for f in result.findings if f.name == "event_start_date"]
    assert f.message == "Event Start Date is not a real calendar date."


@pytest.mark.parametrize("value", ["١٥/٠٦/١٩٥٠", "１５/０６/１９５０"])
def test_non_ascii_digits_are_not_a_date(value: str) -> None:
    assert rules_for("date_of_birth", value) == ["CLD010"]


# ---- NHS number ----


@pytest.mark.parametrize("seq", range(6))
def test_synthetic_999_numbers_pass(seq: int) -> None:
    number = synthetic_nhs_number(seq)
    assert number.startswith("999")
    assert rules_for("nhs_number", number) == []


def test_check_digit_zero_when_remainder_is_zero() -> None:
    assert nhs_check_digit("999000005") == 0
    assert nhs_check_digit_ok("9990000050")
    assert rules_for("nhs_number", "9990000050") == []
    assert rules_for("nhs_number", "9990000051") == ["CLD021"]


@pytest.mark.parametrize("last", "0123456789")
def test_remainder_10_is_never_valid(last: str) -> None:
    number = synthetic_nhs_number_with_remainder_10()[:9] + last
    assert number.startswith("999")
    assert not nhs_check_digit_ok(number)
    assert rules_for("nhs_number", number) == ["CLD021"]


def test_every_wrong_check_digit_fails() -> None:
    good = synthetic_nhs_number(7)
    for d in "0123456789":
        candidate = good[:9] + d
        assert rules_for("nhs_number", candidate) == ([] if d == good[9] else ["CLD021"])


@pytest.mark.parametrize(
    "value",
    [
        "999000001",
        "99900000188",
        "999 000 0018",
        "999-000-0018",
        "A990000018",
        " 9990000018",
        "9990000018 ",
        "+9990000018",
        "999000001.8",
    ],
)
def test_nhs_number_not_10_digits_is_cld020(value: str) -> None:
    assert rules_for("nhs_number", value) == ["CLD020"]


def test_full_width_nhs_number_is_not_10_digits() -> None:
    assert rules_for("nhs_number", "９９９０００００１８") == ["CLD020"]


# ---- postcode ----


@pytest.mark.parametrize(
    "value", ["M1 1AE", "B33 8TH", "CR2 6XH", "DN55 1PT", "W1A 0AX", "EC1A 1BB", "GIR 0AA", "SW1A1AA", "ls1 4ap"]
)
def test_postcode_shapes_pass(value: str) -> None:
    assert rules_for("postcode", value) == []


@pytest.mark.parametrize(
    "value", ["LS1  4AP", "12345", "LS1", "LS1 4AP X", "L$1 4AP", "1LS 4AP", "LS1 4A", "LS1 44P", "LSS1 4AP", "LS1-4AP"]
)
def test_non_postcodes_are_cld030(value: str) -> None:
    assert rules_for("postcode", value) == ["CLD030"]


# ---- decimals (Unit Cost, Planned units per week) ----
DECIMALS = ["unit_cost", "planned_units_per_week"]


@pytest.mark.parametrize("value", ["0", "10", "10.5", "10.50", "-10.50", "-0.01", "0.00", "1234567890123456.99"])
@pytest.mark.parametrize("field", DECIMALS)
def test_decimals_with_up_to_two_places_pass(field: str, value: str) -> None:
    assert rules_for(field, value) == []


@pytest.mark.parametrize("value", ["12.345", "-1.001", "0.000"])
@pytest.mark.parametrize("field", DECIMALS)
def test_three_decimal_places_is_cld040(field: str, value: str) -> None:
    result, mine = run(field, value)
    assert mine == [("CLD040", Validity.INVALID)]
    assert "more than two decimal places" in next(f.message for f in result.findings if f.name == field)


@pytest.mark.parametrize("value", ["1e5", "1E5", "1,000.00", "£10", "10.", ".5", "+10", "ten", "10 ", "NaN", "--1"])
@pytest.mark.parametrize("field", DECIMALS)
def test_non_numbers_are_cld040(field: str, value: str) -> None:
    result, mine = run(field, value)
    assert mine == [("CLD040", Validity.INVALID)]
    assert "is not a number with up to two decimal places" in next(
        f.message for f in result.findings if f.name == field
    )


def test_too_many_integer_digits_message_does_not_blame_decimal_places() -> None:
    result, mine = run("unit_cost", "12345678901234567")
    assert mine == [("CLD040", Validity.INVALID)]
    assert "decimal places" not in next(f.message for f in result.findings if f.name == "unit_cost")


def test_blank_decimal_is_blank_not_invalid() -> None:
    for blank in ("", None):
        assert run("unit_cost", blank)[1] == [("S-UNIT-COST-MANDATORY", Validity.BLANK_MANDATORY)]


def test_full_width_decimal_is_not_a_number() -> None:
    assert rules_for("unit_cost", "１０.５０") == ["CLD040"]


# ---- integer (No. of adults being cared for) ----


@pytest.mark.parametrize("value", ["0", "1", "3", "999999"])
def test_whole_numbers_pass(value: str) -> None:
    assert rules_for("no_of_adults_being_cared_for", value, carer=True) == []


@pytest.mark.parametrize("value", ["-1", "1.0", "1e3", "one", "1000000", "+1", " 1", "0x1"])
def test_non_whole_numbers_are_cld041(value: str) -> None:
    assert rules_for("no_of_adults_being_cared_for", value, carer=True) == ["CLD041"]


# ---- LA code, GP practice code (ODS), CQC location id ----


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("318", True),
        ("001", True),
        ("31", False),
        ("3180", False),
        ("E08", False),
        ("abc", False),
        ("E08000035", False),
    ],
)
def test_la_code(value: str, ok: bool) -> None:
    assert rules_for("la_code", value) == ([] if ok else ["CLD050"])


def test_full_width_la_code_fails() -> None:
    assert rules_for("la_code", "３１８") == ["CLD050"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("A12345", True),
        ("Y00001", True),
        ("a12345", False),
        ("A1234", False),
        ("A123456", False),
        ("AB1234", False),
        ("12345A", False),
        ("A 12345", False),
    ],
)
def test_gp_practice_code(value: str, ok: bool) -> None:
    assert rules_for("gp_practice_code", value) == ([] if ok else ["CLD051"])


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("1-1", True),
        ("1-123456789012", True),
        ("1-1234567890123", False),
        ("2-123", False),
        ("1-", False),
        ("1 123", False),
        ("ABC", False),
        ("1-12A", False),
        ("RXX", False),
    ],
)
def test_cqc_location_id(value: str, ok: bool) -> None:
    assert rules_for("provider_cqc_location_id", value) == ([] if ok else ["CLD052"])


# ---- free text and identifiers: only the length is checked ----


@pytest.mark.parametrize("value", ["<script>alert(1)</script>", "Ünïcödé ✓", "'; DROP TABLE x; --", 'a,b"c'])
@pytest.mark.parametrize(
    "field",
    [
        "first_name",
        "event_description",
        "la_person_unique_identifier",
        "event_reference",
        "gp_practice_name",
        "provider_cqc_location_name",
    ],
)
def test_free_text_and_identifiers_take_any_text(field: str, value: str) -> None:
    assert rules_for(field, value) == []


@pytest.mark.parametrize("field", [f.name for f in SPEC.fields])
def test_every_field_rejects_over_long_values_with_cld053(field: str) -> None:
    carer = field in {
        "no_of_adults_being_cared_for",
        "total_hrs_caring_per_week",
        "adult_1_linked_person_id",
        "adult_2_linked_person_id",
        "adult_3_linked_person_id",
    }
    result, mine = run(field, "9" * (MAX_TEXT_LENGTH + 1), carer=carer)
    assert mine == [("CLD053", Validity.INVALID)]
    assert str(MAX_TEXT_LENGTH) in next(f.message for f in result.findings if f.name == field)


def test_total_hours_caring_has_unknown_format_and_is_unchecked() -> None:
    result, mine = run("total_hrs_caring_per_week", "about 20", carer=True)
    assert mine == []
    assert "total_hrs_caring_per_week" in result.unchecked
