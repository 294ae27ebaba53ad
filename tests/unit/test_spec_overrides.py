"""LA code list overrides (CSV, JSON, .xlsx): a named list is replaced whole and marked complete, so values
outside it then fail; bad files raise CodeListError with a message that says what is wrong."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from openpyxl import Workbook

from cld_schemas.spec import (
    CodeList,
    CodeListError,
    CodeValue,
    Completeness,
    Release,
    Validity,
    load_code_list_override,
    load_spec,
)
from cld_validation.rules import Validator, validate_record
from tests.support.builders import a_service_row

SPEC = load_spec()
R1, R2 = Release.R1, Release.R2
FREQUENCIES = ["Weekly", "Fortnightly", "Hourly"]


def _rows(field: str = "Cost Frequency (Unit Type)", release: str = "r2") -> list[dict[str, str]]:
    return [{"field": field, "release": release, "value": v} for v in FREQUENCIES]


def write_csv(path: Path, rows: list[dict[str, str]], *, bom: bool = False) -> Path:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def write_xlsx(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> Path:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(header)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def _cost_frequency(validator: Validator, value: str) -> tuple[list[tuple[str, Validity]], list[str]]:
    result = validator.validate(a_service_row(R2, cost_frequency_unit_type=value))
    return [(f.rule, f.validity) for f in result.findings], result.unchecked


def _assert_override_enforced(overrides: dict[tuple[str, Release], CodeList], source: str) -> None:
    cl = overrides[("cost_frequency_unit_type", R2)]
    assert cl.completeness is Completeness.COMPLETE
    assert [v.value for v in cl.values] == FREQUENCIES
    assert cl.source is not None
    assert source in cl.source
    validator = Validator(SPEC.with_code_lists(overrides), R2)
    assert _cost_frequency(validator, "Weekly") == ([], [])
    findings, unchecked = _cost_frequency(validator, "Monthly")
    assert findings == [("CLD002", Validity.INVALID)]
    assert "cost_frequency_unit_type" not in unchecked
    assert _cost_frequency(validator, "weekly")[0] == [("CLD004", Validity.INVALID)]


def test_without_override_the_list_is_unknown_and_values_are_unchecked() -> None:
    validator = Validator(SPEC, R2)
    assert _cost_frequency(validator, "Monthly") == ([], ["cost_frequency_unit_type"])


def test_csv_override(tmp_path: Path) -> None:
    overrides = load_code_list_override(write_csv(tmp_path / "lists.csv", _rows()))
    assert set(overrides) == {("cost_frequency_unit_type", R2)}
    _assert_override_enforced(overrides, "lists.csv")


def test_csv_override_with_bom_snake_names_and_upper_case_headers(tmp_path: Path) -> None:
    rows = [{"FIELD": "cost_frequency_unit_type", "Release": "R2", "VALUE": f" {v} "} for v in FREQUENCIES]
    overrides = load_code_list_override(write_csv(tmp_path / "lists.CSV", rows, bom=True))
    _assert_override_enforced(overrides, "lists.CSV")


def test_json_override_list(tmp_path: Path) -> None:
    path = tmp_path / "lists.json"
    path.write_text(json.dumps(_rows()), encoding="utf-8")
    _assert_override_enforced(load_code_list_override(path), "lists.json")


def test_json_override_values_object(tmp_path: Path) -> None:
    path = tmp_path / "lists.json"
    path.write_text(json.dumps({"values": _rows(field="cost_frequency_unit_type")}), encoding="utf-8")
    _assert_override_enforced(load_code_list_override(path), "lists.json")


def test_xlsx_override(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "lists.xlsx",
        ["Field", "Release", "Value"],
        [["Cost Frequency (Unit Type)", "r2", v] for v in FREQUENCIES] + [[None, None, None]],
    )
    _assert_override_enforced(load_code_list_override(path), "lists.xlsx")


def test_override_replaces_a_partial_list_and_leaves_the_other_release_alone(tmp_path: Path) -> None:
    values = ["Learning disability support", "Mental health support", "Social support: Support to unpaid carer"]
    rows = [{"field": "Primary Support Reason", "release": "r2", "value": v} for v in values]
    overrides = load_code_list_override(write_csv(tmp_path / "psr.csv", rows))
    spec = SPEC.with_code_lists(overrides)
    psr = spec.field("primary_support_reason")
    r2 = psr.code_list(R2)
    assert r2 is not None
    assert r2.completeness is Completeness.COMPLETE
    assert [v.value for v in r2.values] == values
    assert psr.code_list(R1) == SPEC.field("primary_support_reason").code_list(R1)
    # A value the spec already knows keeps its meaning (used by status rules and the release mapping).
    assert r2.values[2].key == "support_to_carer"
    v2 = Validator(spec, R2)
    ok = v2.validate(a_service_row(R2, primary_support_reason="Mental health support"))
    assert ok.findings == []
    assert "primary_support_reason" not in ok.unchecked
    # The LA's list replaces the shipped one whole: other values now fail.
    bad = v2.validate(a_service_row(R2, primary_support_reason="Physical support: Everything"))
    assert [(f.name, f.rule) for f in bad.findings] == [("primary_support_reason", "CLD002")]
    # 'Unknown' was in the shipped partial R2 list but is not in the LA's: only Release 1 still has it.
    gone = v2.validate(a_service_row(R2, primary_support_reason="Unknown"))
    assert [(f.name, f.rule) for f in gone.findings] == [("primary_support_reason", "CLD003")]
    # The Release 1 wording of a meaning in the new list is a Release 1 value.
    old = v2.validate(a_service_row(R2, primary_support_reason="Mental Health Support"))
    assert [(f.name, f.rule) for f in old.findings] == [("primary_support_reason", "CLD003")]


def test_override_key_and_group_columns_feed_status_rules(tmp_path: Path) -> None:
    rows = [
        {
            "field": "Service Type",
            "release": "r2",
            "value": "Long term support: Everything",
            "key": "lt_all",
            "group": "long_term",
        },
        {
            "field": "Service Type",
            "release": "r2",
            "value": "Short term support: Everything",
            "key": "st_all",
            "group": "short_term",
        },
    ]
    overrides = load_code_list_override(write_csv(tmp_path / "st.csv", rows))
    cl = overrides[("service_type", R2)]
    assert [(v.key, v.group) for v in cl.values] == [("lt_all", "long_term"), ("st_all", "short_term")]
    v2 = Validator(SPEC.with_code_lists(overrides), R2)
    unit_cost = [f.name for f in sorted(SPEC.fields, key=lambda f: f.order)].index("unit_cost")
    lt = v2.validate(a_service_row(R2, service_type="Long term support: Everything", unit_cost=None))
    st = v2.validate(a_service_row(R2, service_type="Short term support: Everything", unit_cost=None))
    assert lt.statuses[unit_cost].value == "Mandatory"
    assert [(f.name, f.validity) for f in lt.findings] == [("unit_cost", Validity.BLANK_MANDATORY)]
    assert st.statuses[unit_cost].value == "Applicable but not mandatory"
    assert st.findings == []


def test_override_without_key_reuses_known_key_or_slugs_the_value(tmp_path: Path) -> None:
    rows = [
        {"field": "Gender", "release": "r2", "value": "Female"},
        {"field": "Gender", "release": "r2", "value": "Non-binary / Other"},
    ]
    cl = load_code_list_override(write_csv(tmp_path / "g.csv", rows))[("gender", R2)]
    assert [v.key for v in cl.values] == ["female", "non_binary___other"]


def test_validate_record_accepts_an_overridden_spec(tmp_path: Path) -> None:
    overrides = load_code_list_override(write_csv(tmp_path / "lists.csv", _rows()))
    spec = SPEC.with_code_lists(overrides)
    result = validate_record(a_service_row(R2, cost_frequency_unit_type="Monthly"), release=R2, spec=spec)
    assert [(f.name, f.rule) for f in result.findings] == [("cost_frequency_unit_type", "CLD002")]


# ---- bad override files ----


def _csv_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("lists.txt", "field,release,value\n", "must be .csv, .json or .xlsx, not '.txt'"),
        ("lists", "field,release,value\n", "not 'no extension'"),
        ("lists.csv", "", "holds no values"),
        ("lists.csv", "field,release,value\n", "holds no values"),
        ("lists.csv", "field,release,value\nBogus Field,r2,X\n", "row 1: unknown field 'Bogus Field'"),
        ("lists.csv", "field,release,value\nGender,r2,Male\nPostcode,r2,X\n", "row 2: field 'Postcode' is not a coded"),
        ("lists.csv", "field,release,value\nGender,r3,Male\n", "row 1: release must be r1 or r2"),
        ("lists.csv", "field,release,value\nGender,,Male\n", "row 1: release must be r1 or r2"),
        ("lists.csv", "field,release,value\nGender,r2,  \n", "row 1: value is blank"),
        ("lists.csv", "colour,size\nred,big\n", "row 1: unknown field ''"),
        ("lists.json", "{not json", "cannot read code list file lists.json: JSONDecodeError"),
        ("lists.json", '{"field": "Gender"}', "JSON code list must be a list"),
        ("lists.json", '["Gender", "Male"]', "JSON code list must be a list"),
        ("lists.json", "[]", "holds no values"),
        ("lists.json", '[{"field": "Gender", "release": "r2", "value": null}]', "row 1: value is blank"),
    ],
)
def test_bad_override_file_raises_code_list_error(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = _csv_text(tmp_path / name, content)
    with pytest.raises(CodeListError) as exc:
        load_code_list_override(path)
    assert message in str(exc.value)


def test_missing_file_raises_code_list_error(tmp_path: Path) -> None:
    with pytest.raises(CodeListError, match=r"cannot read code list file nope\.csv: FileNotFoundError"):
        load_code_list_override(tmp_path / "nope.csv")


def test_non_utf8_csv_raises_code_list_error(tmp_path: Path) -> None:
    path = _csv_text(tmp_path / "lists.csv", "field,release,value\nGender,r2,Mâle\xff\n", encoding="latin-1")
    with pytest.raises(CodeListError, match="UnicodeDecodeError"):
        load_code_list_override(path)


def test_xlsx_with_unknown_field_raises_code_list_error(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "l.xlsx", ["field", "release", "value"], [["Favourite Colour", "r2", "Blue"]])
    with pytest.raises(CodeListError, match="row 1: unknown field 'Favourite Colour'"):
        load_code_list_override(path)


def test_empty_xlsx_raises_code_list_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.xlsx"
    Workbook().save(path)
    with pytest.raises(CodeListError, match="holds no values"):
        load_code_list_override(path)


def test_corrupt_xlsx_raises_code_list_error(tmp_path: Path) -> None:
    path = tmp_path / "lists.xlsx"
    path.write_text("field,release,value\nGender,r2,Male\n", encoding="utf-8")
    with pytest.raises(CodeListError, match=r"lists\.xlsx"):
        load_code_list_override(path)


def test_with_code_lists_rejects_unknown_and_uncoded_fields() -> None:
    cl = CodeList(completeness=Completeness.COMPLETE, values=(CodeValue(value="X", key="x"),))
    with pytest.raises(CodeListError, match="unknown field: 'favourite_colour'"):
        SPEC.with_code_lists({("favourite_colour", R2): cl})
    with pytest.raises(CodeListError, match="'Postcode' is not a coded field"):
        SPEC.with_code_lists({("postcode", R2): cl})


def test_with_code_lists_does_not_change_the_shipped_spec(tmp_path: Path) -> None:
    overrides = load_code_list_override(write_csv(tmp_path / "lists.csv", _rows()))
    SPEC.with_code_lists(overrides)
    cl = load_spec().field("cost_frequency_unit_type").code_list(R2)
    assert cl is not None
    assert cl.completeness is Completeness.UNKNOWN
    assert cl.values == ()
