"""A pydantic model of one CLD record, derived from the specification data (not written by hand).

Values are kept as the source sent them (strings, or None when blank): the DQ rules, not the parser, decide
whether a value is valid, so that invalid values are reported rather than rejected or silently changed.
Unknown keys are refused: a misspelt field name would otherwise lose data without anyone noticing.

JSON types (docs/contract.md, "Types"): every value is text or null; a JSON number is accepted only in a field
whose spec format is numeric (``integer``, ``decimal_2dp``: :data:`cld_schemas.spec.NUMERIC_FORMATS`) and is
kept as its decimal text. A number anywhere else (a name, a date, an NHS number, a code), true/false, a list or
an object is refused, naming the field and never the value: both channels (the ingest API, 422, and the raw
topic, dead letter ``wrong_type``) use this one model.
"""

from __future__ import annotations

import math
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema, create_model
from pydantic_core import PydanticCustomError

from cld_schemas.spec import Spec, load_spec

MAX_VALUE_LENGTH = 4096
"""No CLD value is anywhere near this long; the spec's own maximum lengths are unknown (sources.md question 7)."""


JSON_TYPE_ERROR: Final = "cld_json_type"
"""The pydantic error type of a value whose JSON type the contract does not allow in its field."""
NOT_TEXT: Final = "expected text (a JSON string) or null"
NOT_A_NUMBER_FIELD: Final = "a JSON number is accepted only in a numeric field; send this value as text"
NOT_A_CLD_VALUE: Final = "a true/false value is not a CLD value"


def _wrong_type(message: str) -> PydanticCustomError:
    return PydanticCustomError(JSON_TYPE_ERROR, message)


def _checked_text(value: str) -> str | None:
    value = value.strip()
    if len(value) > MAX_VALUE_LENGTH:
        raise ValueError(f"longer than {MAX_VALUE_LENGTH} characters")
    return value or None


def _to_text(value: Any) -> str | None:
    """A text field: a string or null, nothing else (a number here is refused, see the module docstring)."""
    if value is None:
        return None
    if isinstance(value, str):
        return _checked_text(value)
    if isinstance(value, bool):
        raise _wrong_type(NOT_A_CLD_VALUE)
    if isinstance(value, int | float | Decimal):
        raise _wrong_type(NOT_A_NUMBER_FIELD)
    raise _wrong_type(NOT_TEXT)


def _number_to_text(value: Any) -> str | None:
    """A numeric field: a string, null, or a finite JSON number (kept as its decimal text)."""
    if value is None:
        return None
    if isinstance(value, str):
        return _checked_text(value)
    if isinstance(value, bool):
        raise _wrong_type(NOT_A_CLD_VALUE)
    if isinstance(value, int):
        return _checked_text(str(value))
    if isinstance(value, float | Decimal):
        if isinstance(value, float) and not math.isfinite(value):
            raise _wrong_type("not a finite number")
        if isinstance(value, Decimal) and not value.is_finite():
            raise _wrong_type("not a finite number")
        return _checked_text(repr(value) if isinstance(value, float) else str(value))
    raise _wrong_type("expected text (a JSON string), a number or null")


CLDValue = Annotated[str | None, BeforeValidator(_to_text)]
"""A text field's value."""
CLDNumericValue = Annotated[
    str | None,
    BeforeValidator(_number_to_text),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}),
]
"""A numeric field's value (text or a JSON number, as text)."""


class _RecordBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    def values(self) -> dict[str, str | None]:
        return self.model_dump()


@cache
def record_model(spec: Spec | None = None) -> type[_RecordBase]:
    """The record model for ``spec`` (default: the shipped spec). Every field is optional text; a numeric
    field (spec format ``integer`` or ``decimal_2dp``) also takes a JSON number."""
    spec = spec or load_spec()
    fields: dict[str, Any] = {
        f.name: (CLDNumericValue if f.numeric else CLDValue, None) for f in sorted(spec.fields, key=lambda f: f.order)
    }
    model: type[_RecordBase] = create_model("CLDRecord", __base__=_RecordBase, **fields)
    model.__doc__ = "One CLD record: one row of an LA's file, fields by snake_case name (derived from the spec)."
    return model


CLDRecord = record_model()
