"""The streaming CSV reader: headers in any order / case, BOM, unusable files, ragged rows, huge cells."""

from __future__ import annotations

import csv
import io
import random

import pytest

from cld_schemas.csvfile import REQUIRED_HEADERS_MIN, CLDFileError, CLDStructureError, iter_records
from cld_schemas.spec import Release, load_spec
from cld_validation.rules import Validator, validate_record
from tests.support.builders import Row, a_carer_row, a_service_row

SPEC = load_spec()
FILE_FIELDS = SPEC.file_fields
HEADERS = [f.header for f in FILE_FIELDS]


def to_csv(rows: list[Row], headers: list[str] | None = None, *, names: list[str] | None = None) -> str:
    """A CSV text with the given headers (spec headers by default) mapped to spec field names in order."""
    headers = headers or HEADERS
    names = names or [f.name for f in FILE_FIELDS]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(headers)
    for r in rows:
        w.writerow([r.get(n) or "" for n in names])
    return buf.getvalue()


def read(text: str) -> list[dict[str, str | None]]:
    _header, rows = iter_records(io.StringIO(text))
    return list(rows)


def expected(row: Row) -> Row:
    """What the reader gives back for a row written to a file without LA Code (not a file column)."""
    return {**row, "la_code": None}


def test_round_trip_of_builder_rows() -> None:
    rows = [a_service_row(), a_carer_row()]
    got = read(to_csv(rows))
    assert got == [expected(r) for r in rows]


def test_headers_in_any_order() -> None:
    order = list(range(len(FILE_FIELDS)))
    random.Random(7).shuffle(order)
    headers = [HEADERS[i] for i in order]
    names = [FILE_FIELDS[i].name for i in order]
    row = a_service_row()
    header, rows = iter_records(io.StringIO(to_csv([row], headers, names=names)))
    assert list(rows) == [expected(row)]
    assert header.columns == tuple(names)
    assert header.unknown_columns == ()
    assert header.missing_fields == ()


def test_byte_order_mark_is_ignored() -> None:
    row = a_service_row()
    header, rows = iter_records(io.StringIO("\ufeff" + to_csv([row])))
    assert header.columns[0] == FILE_FIELDS[0].name
    assert list(rows) == [expected(row)]


@pytest.mark.parametrize("transform", [str.upper, str.lower, lambda h: f"  {h}  "])
def test_headers_are_case_insensitive_and_trimmed(transform: object) -> None:
    row = a_service_row()
    headers = [transform(h) for h in HEADERS]  # type: ignore[operator]
    assert read(to_csv([row], headers)) == [expected(row)]


def test_snake_case_names_are_accepted_as_headers() -> None:
    row = a_service_row()
    assert read(to_csv([row], [f.name for f in FILE_FIELDS])) == [expected(row)]


def test_la_code_column_is_read_when_present() -> None:
    row = a_service_row()
    headers = ["LA Code", *HEADERS]
    names = ["la_code", *(f.name for f in FILE_FIELDS)]
    assert read(to_csv([row], headers, names=names)) == [row]


@pytest.mark.parametrize("duplicate", ["NHS Number", "nhs number", "nhs_number"])
def test_duplicate_header_is_a_file_error(duplicate: str) -> None:
    with pytest.raises(CLDFileError, match="appears twice"):
        iter_records(io.StringIO(to_csv([], [*HEADERS, duplicate])))


@pytest.mark.parametrize("text", ["", "\n", "\r\n\r\n"])
def test_empty_file_is_a_file_error(text: str) -> None:
    with pytest.raises(CLDFileError, match=r"empty|column headers"):
        iter_records(io.StringIO(text))


def test_header_only_file_has_no_rows() -> None:
    assert read(to_csv([])) == []


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_other_delimiters_get_a_clear_error(delimiter: str) -> None:
    text = delimiter.join(HEADERS) + "\n" + delimiter.join("x" for _ in HEADERS) + "\n"
    with pytest.raises(CLDFileError, match="does not look comma-separated"):
        iter_records(io.StringIO(text))


def test_too_few_recognised_headers() -> None:
    few = REQUIRED_HEADERS_MIN - 1
    with pytest.raises(CLDFileError, match=f"only {few} of the specification's column headers"):
        iter_records(io.StringIO(",".join([*HEADERS[:few], "Colour", "Size"]) + "\n"))
    header, _ = iter_records(io.StringIO(",".join(HEADERS[:REQUIRED_HEADERS_MIN]) + "\n"))
    assert len(header.missing_fields) == len(HEADERS) - REQUIRED_HEADERS_MIN


def test_unknown_columns_are_reported_and_their_values_ignored() -> None:
    row = a_service_row()
    text = to_csv([row], [*HEADERS, "Favourite Colour"], names=[*(f.name for f in FILE_FIELDS), "nope"])
    header, rows = iter_records(io.StringIO(text))
    assert header.unknown_columns == ("Favourite Colour",)
    assert header.columns[-1] is None
    assert list(rows) == [expected(row)]


def test_missing_columns_are_listed_and_read_as_blank() -> None:
    keep = [f for f in FILE_FIELDS if f.name != "postcode"]
    row = a_service_row()
    header, rows = iter_records(io.StringIO(to_csv([row], [f.header for f in keep], names=[f.name for f in keep])))
    assert header.missing_fields == ("Postcode",)
    assert list(rows) == [{**expected(row), "postcode": None}]


def test_short_rows_are_padded_with_blanks_and_long_rows_truncated() -> None:
    header_line = ",".join(HEADERS)
    short = "01/04/2024,31/03/2025,9990000018"
    long = ",".join(["x"] * len(HEADERS)) + ",EXTRA1,EXTRA2"
    got = read(f"{header_line}\n{short}\n{long}\n")
    assert got[0]["reporting_period_start_date"] == "01/04/2024"
    assert got[0]["nhs_number"] == "9990000018"
    assert all(
        v is None
        for k, v in got[0].items()
        if k not in {"reporting_period_start_date", "reporting_period_end_date", "nhs_number"}
    )
    assert all(v == "x" for k, v in got[1].items() if k != "la_code")
    assert "EXTRA1" not in got[1].values()


def test_ragged_rows_are_reported() -> None:
    _header, rows = iter_records(
        io.StringIO(",".join(HEADERS) + "\na,b\n" + ",".join(["x"] * (len(HEADERS) + 2)) + "\n")
    )
    list(rows)
    assert (rows.short_rows, rows.long_rows) == (1, 1)
    assert rows.ragged_lines == [2, 3]


def test_blank_lines_are_skipped_and_values_trimmed() -> None:
    row = a_service_row()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(HEADERS)
    buf.write("\r\n   \r\n")
    w.writerow([f"  {row[f.name] or ''}\t " for f in FILE_FIELDS])
    buf.write("\r\n")
    assert read(buf.getvalue()) == [expected(row)]


def test_quoted_cells_with_commas_and_doubled_quotes() -> None:
    row = a_service_row(event_description='Line one, "quoted", ""twice""', provider_cqc_location_name="A, B & C")
    assert read(to_csv([row])) == [expected(row)]


# ---- strict structure (issue 10, finding 2): never fewer rows than the file has, silently ----


def six_people(first_names: list[str]) -> str:
    """Rows with no quoted cell at all (so the only quote is the one a test puts in)."""
    rows = [
        a_service_row(first_name=n, la_person_unique_identifier=f"P{i}", ethnicity="Other")
        for i, n in enumerate(first_names)
    ]
    text = to_csv(rows)
    assert '"' not in text
    return text


def test_an_unterminated_quote_in_row_2_is_an_error_at_its_line_not_two_rows() -> None:
    text = six_people(["Ann", "Bob", "Cat", "Dan", "Eve", "Fay"])
    broken = text.replace(",Bob,", ',"Bob,', 1)  # row 2 = physical line 3: the quote is never closed
    _header, rows = iter_records(io.StringIO(broken, newline=""))
    with pytest.raises(CLDStructureError, match=r"^line 3: a double quote opened on this line is not closed") as exc:
        list(rows)
    assert exc.value.line == 3
    assert "Bob" not in str(exc.value)
    assert "Cat" not in str(exc.value)


def test_a_stray_quote_closed_rows_later_is_an_error_at_the_line_it_opened() -> None:
    text = six_people(["Ann", "Bob", "Cat", "Dan", "Eve", "Fay"])
    broken = text.replace(",Bob,", ',"Bob,', 1).replace(",Eve,", ',Eve",', 1)  # opened on line 3, closed on 6
    _header, rows = iter_records(io.StringIO(broken, newline=""))
    with pytest.raises(CLDStructureError, match=r"^line 3: a quoted cell runs over a line break") as exc:
        list(rows)
    assert exc.value.line == 3


def test_a_stray_quote_that_meets_another_quoted_cell_is_an_error_at_its_line() -> None:
    text = to_csv([a_service_row(), a_service_row(first_name="Bob", event_description="a, b")])
    broken = text.replace(",Bob,", ',"Bob,', 1)
    _header, rows = iter_records(io.StringIO(broken, newline=""))
    with pytest.raises(CLDStructureError, match=r"^line 3: .*double quote"):
        list(rows)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_quoted_cell_holding_a_line_break_is_an_error_at_its_line(newline: str) -> None:
    rows = [a_service_row(), a_service_row(event_description=f"Line one{newline}line two"), a_service_row()]
    _header, it = iter_records(io.StringIO(to_csv(rows), newline=""))
    with pytest.raises(CLDStructureError, match=r"^line 3: a quoted cell runs over a line break") as exc:
        list(it)
    assert "Line one" not in str(exc.value)


def test_text_after_a_closing_quote_is_an_error_at_its_line() -> None:
    text = six_people(["Ann", "Bob"]).replace(",Bob,", ',"Bo"b,', 1)
    _header, rows = iter_records(io.StringIO(text, newline=""))
    with pytest.raises(CLDStructureError, match=r"^line 3: text follows a closing double quote"):
        list(rows)


def test_a_quote_left_open_in_the_last_row_is_an_error() -> None:
    text = six_people(["Ann", "Bob"]).replace(",Bob,", ',"Bob,', 1)
    _header, rows = iter_records(io.StringIO(text, newline=""))
    with pytest.raises(CLDStructureError, match=r"^line 3: a double quote opened on this line is not closed"):
        list(rows)


def test_a_header_running_over_a_line_break_is_an_error_at_line_1() -> None:
    text = '"' + HEADERS[0] + "\n" + '",' + ",".join(HEADERS[1:]) + "\n"
    with pytest.raises(CLDStructureError, match=r"^line 1: "):
        iter_records(io.StringIO(text, newline=""))


def test_a_quote_inside_an_unquoted_cell_is_kept_as_it_is() -> None:
    row = a_service_row(first_name='Ann "Nan"')
    text = to_csv([row]).replace('"Ann ""Nan"""', 'Ann "Nan"')
    assert 'Ann "Nan"' in text
    assert read(text) == [expected(row)]


def test_rows_are_streamed_lazily() -> None:
    _header, rows = iter_records(io.StringIO(to_csv([a_service_row()] * 3)))
    it = iter(rows)
    assert next(it)["nhs_number"] == "9990000018"
    assert rows.short_rows == 0


def test_ten_megabyte_field_is_read_and_fails_validation_as_too_long() -> None:
    big = "Z" * (10 * 1024 * 1024)
    row = a_service_row(event_description=big)
    (got,) = read(to_csv([row]))
    assert got["event_description"] == big
    result = Validator(SPEC, Release.R1, absent=frozenset({"la_code"})).validate(got)
    assert [(f.name, f.rule) for f in result.findings] == [("event_description", "CLD053")]
    assert all(big[:100] not in f.message for f in result.findings)


def test_cell_beyond_the_csv_field_limit_is_a_file_error_without_the_value() -> None:
    huge = "Q" * (csv.field_size_limit() + 1)
    text = ",".join(HEADERS) + "\n" + huge + "\n"
    _header, rows = iter_records(io.StringIO(text))
    with pytest.raises(CLDStructureError, match=r"^line 2: a cell is larger than") as exc:
        list(rows)
    assert "QQQQ" not in str(exc.value)


def test_binary_content_decoded_leniently_is_a_file_error() -> None:
    """The CLI opens files as strict UTF-8 (a binary file fails there); text that is binary noise is not CSV."""
    rng = random.Random(3)
    blob = bytes(rng.randrange(256) for _ in range(4096))
    with pytest.raises(UnicodeDecodeError):
        blob.decode("utf-8")
    with pytest.raises(CLDFileError):
        iter_records(io.StringIO(blob.decode("utf-8", errors="replace")))


def test_nul_characters_in_a_cell() -> None:
    row = a_service_row(event_description="before\x00after")
    assert read(to_csv([row])) == [expected(row)]


def test_carriage_return_inside_an_unquoted_cell_is_a_file_error_without_the_value() -> None:
    text = ",".join(HEADERS) + "\r\n" + "SECRETa\rb," * 3 + "\r\n"
    with pytest.raises(CLDFileError) as exc:
        read(text)
    assert "SECRET" not in str(exc.value)


def test_file_without_la_code_column_fails_la_code_per_row_unless_declared_absent() -> None:
    """LA Code is not a column of submission files by default: callers pass it as ``absent``."""
    (got,) = read(to_csv([a_service_row()]))
    assert [(f.name, f.rule) for f in validate_record(got, release=Release.R1).findings] == [("la_code", "S-LA-CODE")]
    assert Validator(SPEC, Release.R1, absent=frozenset({"la_code"})).validate(got).findings == []
