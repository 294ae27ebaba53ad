"""The raw-record contract, defined once (cld_schemas.contract): the LA-code pattern, the date forms and the one
date parser, the opt-out flags; and the services' copies that used to differ now agree with it."""

from __future__ import annotations

import re
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cld_governance import sharing
from cld_ingest.envelope import EnvelopeError, resolve_la_code
from cld_pseudonymisation.generalise import parse_date as generalise_date
from cld_schemas import contract, topics
from cld_schemas.contract import LA_CODE_PATTERN, OptOut, is_la_code, iso_to_cld, parse_date
from cld_submission.domain.identity import parse_date as identity_date
from cld_validation.release import ReleaseBasis, release_by_period


@pytest.mark.parametrize("text", ["318", "000", "999"])
def test_an_la_code_is_three_ascii_digits(text: str) -> None:
    assert is_la_code(text)
    assert re.match(LA_CODE_PATTERN, text)


@pytest.mark.parametrize("text", ["31", "3180", "٣١٨", "318\n", " 318", "31a", ""])
def test_anything_else_is_not_an_la_code(text: str) -> None:
    assert not is_la_code(text)


def test_the_ingest_refuses_an_la_code_with_a_trailing_newline_or_unicode_digits() -> None:
    for text in ("318\n", "٣١٨"):
        with pytest.raises(EnvelopeError):
            resolve_la_code(None, text)
    assert resolve_la_code(None, "318") == "318"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01/10/2025", date(2025, 10, 1)),
        ("2025-10-01", date(2025, 10, 1)),
        (" 29/02/2024 ", date(2024, 2, 29)),
        ("31/12/1900", date(1900, 12, 31)),
    ],
)
def test_the_date_parser_reads_both_forms(text: str, expected: date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    "text",
    [None, "", "   ", "29/02/2025", "31/04/2025", "00/01/2025", "01/13/2025", "1/10/2025", "2025-1-01",
     "01-10-2025", "2025/10/01", "٠١/١٠/٢٠٢٥", "01/10/２０２５", "01/10/0000", "01/10/2025x"],
)  # fmt: skip
def test_the_date_parser_refuses_what_is_not_a_real_date_in_either_form(text: str | None) -> None:
    assert parse_date(text) is None


@given(st.dates(min_value=date(1, 1, 1)))
def test_a_date_written_in_the_cld_form_reads_back(day: date) -> None:
    assert parse_date(contract.cld_date(day)) == day
    assert parse_date(day.isoformat()) == day


@given(st.one_of(st.none(), st.text(max_size=14), st.dates().map(contract.cld_date), st.dates().map(str)))
def test_the_services_read_dates_with_the_one_parser(text: str | None) -> None:
    """Pseudonymisation's generalisation and submission's scope used parsers of their own (issue 11)."""
    day = parse_date(text)
    assert generalise_date(text) == (None if day is None else (day.year, day.month, day.day))
    if day is not None:
        assert identity_date(text) == day
    elif text is None or not text.strip():
        assert identity_date(text) is None
    else:
        with pytest.raises(ValueError, match="not a date"):
            identity_date(text)


def test_the_release_by_period_reads_the_period_with_the_one_parser() -> None:
    """A period end written d/m/yyyy is not a CLD date: the release falls back as for a blank period."""
    blank = release_by_period({})
    assert release_by_period({"reporting_period_end_date": "1/4/2026"}) == blank
    assert release_by_period({"reporting_period_end_date": "31/03/2026"}).basis is ReleaseBasis.REPORTING_PERIOD_END
    assert blank.basis is not ReleaseBasis.REPORTING_PERIOD_END


def test_iso_dates_become_the_cld_form_with_ascii_digits_only() -> None:
    assert iso_to_cld("2025-10-01") == "01/10/2025"
    assert iso_to_cld("2025-13-45") == "45/13/2025"  # the digits as sent: the DQ rules judge the date
    assert iso_to_cld("٢٠٢٥-١٠-٠١") is None
    assert iso_to_cld("01/10/2025") is None


def test_opt_out_flags_are_the_contract_s_in_governance() -> None:
    assert sharing.OptOut is OptOut
    assert sharing.OPT_OUT_HEADER == contract.HEADER_OPT_OUT == "cld-opt-out"
    flags = contract.parse_opt_out_header(" Objection ,national-data-opt-out,shrug")
    assert flags == {OptOut.OBJECTION, OptOut.NATIONAL_DATA_OPT_OUT, OptOut.UNRECOGNISED}
    assert contract.opt_out_header(flags) == "national-data-opt-out,objection"
    assert contract.opt_out_tokens(flags) == ("national-data-opt-out", "objection", "unrecognised")


def test_the_topic_header_names_are_the_contract_s() -> None:
    assert (topics.HEADER_SOURCE, topics.HEADER_EVENT_ID, topics.HEADER_ACTION) == (
        contract.HEADER_SOURCE,
        contract.HEADER_EVENT_ID,
        contract.HEADER_ACTION,
    )
    assert set(topics.MESSAGES) == set(topics.ALL)
