"""The JSON type rules of a CLD record (issue 10, finding 11; docs/contract.md "Types"): text or null in every
field, a JSON number only in a field whose spec format is numeric. One model serves both channels."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from cld_schemas.record import JSON_TYPE_ERROR, CLDRecord
from cld_schemas.spec import NUMERIC_FORMATS, load_spec

SPEC = load_spec()
NUMERIC = sorted(f.name for f in SPEC.fields if f.numeric)
TEXT = sorted(f.name for f in SPEC.fields if not f.numeric)


def test_the_numeric_fields_come_from_the_spec_formats() -> None:
    assert sorted(f.name for f in SPEC.fields if f.format in ("integer", "decimal_2dp")) == NUMERIC
    assert set(NUMERIC) == {"no_of_adults_being_cared_for", "planned_units_per_week", "unit_cost"}
    assert frozenset({"integer", "decimal_2dp"}) == NUMERIC_FORMATS


@pytest.mark.parametrize(("number", "text"), [(2, "2"), (20.5, "20.5"), (Decimal("10.00"), "10.00"), (0, "0")])
@pytest.mark.parametrize("field", NUMERIC)
def test_a_number_in_a_numeric_field_is_kept_as_its_text(field: str, number: Any, text: str) -> None:
    assert CLDRecord.model_validate({field: number}).values()[field] == text


@pytest.mark.parametrize("field", TEXT)
def test_a_number_in_any_other_field_is_refused_naming_the_field(field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        CLDRecord.model_validate({field: 19500615})
    [error] = exc.value.errors(include_input=False)
    assert error["loc"] == (field,)
    assert error["type"] == JSON_TYPE_ERROR
    assert "19500615" not in str(error["msg"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("unit_cost", True),
        ("unit_cost", float("nan")),
        ("unit_cost", float("inf")),
        ("unit_cost", [1]),
        ("first_name", False),
        ("first_name", {"a": "b"}),
        ("nhs_number", 9990000018),
        ("date_of_birth", 1950.0615),
        ("la_code", 318),
    ],
)
def test_other_json_types_are_refused_everywhere(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        CLDRecord.model_validate({field: value})
    assert [e["loc"] for e in exc.value.errors()] == [(field,)]


@pytest.mark.parametrize("field", NUMERIC + TEXT)
def test_text_and_null_are_accepted_in_every_field(field: str) -> None:
    values = CLDRecord.model_validate({field: " 12 "}).values()
    assert values[field] == "12"
    assert CLDRecord.model_validate({field: None}).values()[field] is None


def test_the_json_schema_documents_numbers_only_for_numeric_fields() -> None:
    props = CLDRecord.model_json_schema()["properties"]
    for name in NUMERIC:
        assert {"type": "number"} in props[name]["anyOf"], name
    for name in TEXT:
        assert {"type": "number"} not in props[name]["anyOf"], name
