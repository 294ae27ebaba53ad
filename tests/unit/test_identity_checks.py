"""Issue 13 item 8: identity checks as warnings, one test per warning, never quoting a value."""

from __future__ import annotations

import json

import pytest

from cld_schemas.spec import Release
from cld_validation.identity_checks import (
    RULES,
    IdentityChecker,
    check_digit_valid,
    is_placeholder,
)
from cld_validation.rules import validate_record
from tests.support.records import service_record

# Check-digit-valid numbers of each kind (computed with the modulus 11 rule).
TEST_RANGE = "9990000018"  # the synthetic data's range
ENGLAND = "4010232137"
SCOTLAND_CHI = "0101010001"
NORTHERN_IRELAND = "3200000007"
NOT_ISSUED = "5000000005"  # the range reserved and not to be issued


def _check_digit(nine: str) -> str:
    total = sum(int(d) * (10 - i) for i, d in enumerate(nine))
    return nine + str((11 - total % 11) % 11)


def _rules(checker: IdentityChecker) -> list[tuple[str, int, str]]:
    return [(w.rule, w.row, w.field) for w in checker.warnings()]


def test_the_test_vectors_are_check_digit_valid() -> None:
    for n in (TEST_RANGE, ENGLAND, SCOTLAND_CHI, NOT_ISSUED, "0000000000", "9999999999", "0123456789"):
        assert check_digit_valid(n), n
    assert _check_digit("401023213") == ENGLAND
    assert not check_digit_valid("9990000019")


@pytest.mark.parametrize("number", ["0000000000", "9999999999", "1111111111", "0123456789", "9876543210"])
def test_placeholder_numbers_are_warned_even_inside_the_test_range(number: str) -> None:
    assert check_digit_valid(number)
    checker = IdentityChecker()
    checker.add(1, {"nhs_number": number, "la_person_unique_identifier": "P1"})
    assert _rules(checker) == [("ID001", 1, "NHS Number")]


def test_an_ordinary_test_range_number_is_not_a_placeholder() -> None:
    assert not is_placeholder(TEST_RANGE)


@pytest.mark.parametrize("number", [SCOTLAND_CHI, NORTHERN_IRELAND, NOT_ISSUED])
def test_numbers_outside_england_wales_and_iom_are_warned(number: str) -> None:
    checker = IdentityChecker()
    checker.add(3, {"nhs_number": number, "la_person_unique_identifier": "P1"})
    assert _rules(checker) == [("ID002", 3, "NHS Number")]


def test_england_numbers_and_the_999_test_range_are_not_warned_and_the_test_range_is_said() -> None:
    checker = IdentityChecker()
    checker.add(1, {"nhs_number": ENGLAND, "la_person_unique_identifier": "P1"})
    checker.add(2, {"nhs_number": TEST_RANGE, "la_person_unique_identifier": "P2"})
    checker.add(3, {"nhs_number": "999 000 0026", "la_person_unique_identifier": "P3"})  # spaced: the same number
    assert checker.warnings() == []
    report = checker.to_json()
    assert report["nhs_numbers_in_test_range"] == 2
    assert "recognised test range" in report["test_range_note"]


def test_a_bad_check_digit_is_left_to_the_dq_rules() -> None:
    checker = IdentityChecker()
    checker.add(1, {"nhs_number": "9990000019"})
    assert checker.warnings() == []
    assert any(
        f.rule == "CLD021"
        for f in validate_record(service_record(nhs_number="9990000019"), release=Release.R2).findings
    )


def test_one_nhs_number_across_many_la_person_ids() -> None:
    checker = IdentityChecker()
    checker.add(1, {"nhs_number": TEST_RANGE, "la_person_unique_identifier": "P1"})
    checker.add(2, {"nhs_number": TEST_RANGE, "la_person_unique_identifier": "P1"})  # the same person again: fine
    checker.add(3, {"nhs_number": TEST_RANGE, "la_person_unique_identifier": "P2"})
    checker.add(4, {"nhs_number": TEST_RANGE, "la_person_unique_identifier": "P3"})
    checker.add(5, {"nhs_number": TEST_RANGE, "la_person_unique_identifier": "P2"})  # P2 already reported
    assert _rules(checker) == [("ID003", 3, "NHS Number"), ("ID003", 4, "NHS Number")]
    assert "(row 1)" in checker.warnings()[0].message
    assert checker.to_json()["nhs_numbers_shared_by_people"] == 1


def test_linked_person_ids_that_name_nobody_in_the_file() -> None:
    checker = IdentityChecker()
    checker.add(
        1, {"la_person_unique_identifier": "C1", "adult_1_linked_person_id": "P9", "adult_2_linked_person_id": "P1"}
    )
    checker.add(2, {"la_person_unique_identifier": "P1"})  # a linked adult listed after the carer: still found
    assert _rules(checker) == [("ID004", 1, "Adult 1 Linked Person_ID")]


@pytest.mark.parametrize("text", ["NULL", "null", "Null", "N/A", "n/a", "#N/A", "(null)", "NA"])
def test_literal_null_text_is_warned(text: str) -> None:
    checker = IdentityChecker()
    checker.add(7, {"postcode": text, "la_person_unique_identifier": "P1"})
    assert _rules(checker) == [("ID005", 7, "Postcode")]


def test_free_text_none_is_null_text_but_a_code_value_is_judged_by_the_dq_rules() -> None:
    checker = IdentityChecker()
    checker._codes["gender"] = frozenset({"none"})  # a coded field whose list holds such a word
    checker.add(1, {"event_description": "None", "gender": "None"})
    assert _rules(checker) == [("ID005", 1, "Event Description")]


def test_warnings_never_carry_a_value_and_never_fail_a_row() -> None:
    checker = IdentityChecker()
    rec = service_record(nhs_number=SCOTLAND_CHI, postcode="NULL", adult_1_linked_person_id="LINK-77")
    checker.add(1, rec)
    checker.add(2, service_record(nhs_number=SCOTLAND_CHI, la_person_unique_identifier="P-OTHER-42"))
    text = json.dumps(checker.to_json())
    for value in (SCOTLAND_CHI, "LINK-77", "P-OTHER-42", "P000123"):
        assert value not in text
    assert {w["rule"] for w in checker.to_json()["warnings"]} == {"ID002", "ID003", "ID004", "ID005"}
    assert set(checker.to_json()["warnings_by_rule"]) <= set(RULES)
    assert all(w["severity"] == "warning" for w in checker.to_json()["warnings"])


def test_counts_stay_exact_when_the_list_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cld_validation.identity_checks.MAX_LISTED_PER_RULE", 3)
    checker = IdentityChecker()
    for row in range(1, 11):
        checker.add(row, {"postcode": "NULL"})
    assert len(checker.warnings()) == 3
    assert checker.to_json()["warnings_by_rule"]["ID005"]["count"] == 10
