"""Property tests: the validator and the CSV reader are total over arbitrary input."""

from __future__ import annotations

import contextlib
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cld_schemas.csvfile import CLDFileError, iter_records
from cld_schemas.spec import FieldStatus, Release, Validity, load_spec
from cld_validation.rules import MAX_TEXT_LENGTH, nhs_check_digit_ok, validate_record
from tests.support.builders import a_carer_row, a_ckba_row, a_request_row, a_review_row, a_service_row

SPEC = load_spec()
NAMES = [f.name for f in SPEC.fields]
HEADERS = [f.header for f in SPEC.file_fields]
RULE_IDS = {r.id for r in SPEC.rules} | {c.id for f in SPEC.fields for c in f.status}
CODE_VALUES = sorted({v.value for f in SPEC.fields for cl in (f.code_lists or {}).values() for v in cl.values})

FAST = settings(
    max_examples=150,
    deadline=None,  # no timing in tests (speed is measured in make bench); a loaded machine made this flaky
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Values: blanks, arbitrary unicode, spec code values and their case variants, date-like and number-like
# strings, and the odd huge one.
values = st.one_of(
    st.none(),
    st.just(""),
    st.text(max_size=30),
    st.sampled_from(CODE_VALUES),
    st.sampled_from(CODE_VALUES).map(str.swapcase),
    st.dates().map(lambda d: d.strftime("%d/%m/%Y")),
    st.from_regex(r"\d{1,2}/\d{1,2}/\d{1,5}", fullmatch=True),
    st.from_regex(r"-?\d{0,18}(\.\d{0,4})?", fullmatch=True),
    st.from_regex(r"\d{10}", fullmatch=True),
    st.integers(min_value=MAX_TEXT_LENGTH - 2, max_value=MAX_TEXT_LENGTH + 2).map(lambda n: "é" * n),
    st.text(min_size=1, max_size=8).map(lambda s: s * 2000),
)

arbitrary_records = st.dictionaries(st.sampled_from(NAMES), values)

base_rows = st.sampled_from(
    [build(rel) for rel in Release for build in (a_service_row, a_carer_row, a_ckba_row, a_request_row, a_review_row)]
)


@st.composite
def mutated_rows(draw: st.DrawFn) -> dict[str, str | None]:
    """A valid builder row with some fields replaced: reaches the status and cross-field branches."""
    row = dict(draw(base_rows))
    row.update(draw(st.dictionaries(st.sampled_from(NAMES), values, max_size=8)))
    return row


def _check_result(record: dict[str, str | None], release: Release) -> None:
    result = validate_record(record, release=release)
    assert len(result.statuses) == len(SPEC.fields)
    assert len(result.validities) == len(SPEC.fields)
    assert all(isinstance(s, FieldStatus) for s in result.statuses)
    assert all(isinstance(v, Validity) for v in result.validities)
    assert result.failed == bool(result.findings)
    names = [f.name for f in result.findings]
    assert len(names) == len(set(names)), "at most one finding per field"
    order = [f.name for f in sorted(SPEC.fields, key=lambda f: f.order)]
    for finding in result.findings:
        assert finding.validity.value.startswith("Failed")
        assert finding.rule in RULE_IDS
        assert finding.header == SPEC.field(finding.name).header
        assert result.validities[order.index(finding.name)] is finding.validity
    for name, validity in zip(order, result.validities, strict=True):
        if validity.failed:
            assert name in names, "a failed validity always has its finding"
    assert set(result.unchecked) <= set(NAMES)


@FAST
@given(record=arbitrary_records, release=st.sampled_from(list(Release)))
def test_validate_record_is_total_on_arbitrary_records(record: dict[str, str | None], release: Release) -> None:
    _check_result(record, release)


@FAST
@given(record=mutated_rows(), release=st.sampled_from(list(Release)))
def test_validate_record_is_total_on_mutated_valid_rows(record: dict[str, str | None], release: Release) -> None:
    _check_result(record, release)


def _independent_nhs_ok(number: str) -> bool:
    """Modulus 11 as the NHS Data Dictionary states it, written separately from the product."""
    digits = [ord(c) - 48 for c in number]
    remainder = sum(d * (10 - i) for i, d in enumerate(digits[:9])) % 11
    expected = (11 - remainder) % 11
    return expected != 10 and expected == digits[9]


@settings(max_examples=500, deadline=None, database=None)
@given(number=st.from_regex(r"[0-9]{10}", fullmatch=True))
def test_nhs_check_digit_agrees_with_independent_implementation(number: str) -> None:
    assert nhs_check_digit_ok(number) is _independent_nhs_ok(number)


@settings(max_examples=300, deadline=None, database=None)
@given(rest=st.from_regex(r"[0-9]{7}", fullmatch=True))
def test_nhs_check_digit_agrees_on_the_synthetic_999_range(rest: str) -> None:
    number = "999" + rest
    assert nhs_check_digit_ok(number) is _independent_nhs_ok(number)


def _read_all(text: str) -> None:
    _header, rows = iter_records(io.StringIO(text))
    for row in rows:
        assert set(row) == set(NAMES)
        assert all(v is None or (v and v == v.strip()) for v in row.values())


@FAST
@given(text=st.text())
def test_csv_reader_raises_only_cld_file_error_on_arbitrary_text(text: str) -> None:
    with contextlib.suppress(CLDFileError):
        _read_all(text)


cells = st.one_of(st.text(max_size=20), st.sampled_from(['"', '""', "\n", "\r", ",", "\x00", "\ufeff", ";"]))


@FAST
@given(
    body=st.lists(st.lists(cells, max_size=len(HEADERS) + 3), max_size=6),
    joiner=st.sampled_from([",", ";", ", "]),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_csv_reader_raises_only_cld_file_error_past_a_real_header(
    body: list[list[str]], joiner: str, newline: str
) -> None:
    text = ",".join(HEADERS) + newline + newline.join(joiner.join(r) for r in body)
    with contextlib.suppress(CLDFileError):
        _read_all(text)
