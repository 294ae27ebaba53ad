"""A pydantic model of one CLD record, derived from the specification data (not written by hand).

Values are kept as the source sent them (strings, or None when blank): the DQ rules, not the parser, decide
whether a value is valid, so that invalid values are reported rather than rejected or silently changed.
Unknown keys are refused: a misspelt field name would otherwise lose data without anyone noticing.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, create_model

from cld_schemas.spec import Spec, load_spec

MAX_VALUE_LENGTH = 4096
"""No CLD value is anywhere near this long; the spec's own maximum lengths are unknown (sources.md question 7)."""


def _to_text(value: Any) -> str | None:
    """JSON numbers are accepted for numeric fields; everything else must already be text."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a true/false value is not a CLD value")
    if isinstance(value, int | Decimal):
        value = str(value)
    elif isinstance(value, float):
        value = repr(value)
    if not isinstance(value, str):
        raise ValueError("expected text")
    value = value.strip()
    if len(value) > MAX_VALUE_LENGTH:
        raise ValueError(f"longer than {MAX_VALUE_LENGTH} characters")
    return value or None


CLDValue = Annotated[str | None, BeforeValidator(_to_text)]


class _RecordBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    def values(self) -> dict[str, str | None]:
        return self.model_dump()


@cache
def record_model(spec: Spec | None = None) -> type[_RecordBase]:
    """The record model for ``spec`` (default: the shipped spec). Every field is optional text."""
    spec = spec or load_spec()
    fields: dict[str, Any] = {f.name: (CLDValue, None) for f in sorted(spec.fields, key=lambda f: f.order)}
    model: type[_RecordBase] = create_model("CLDRecord", __base__=_RecordBase, **fields)
    model.__doc__ = "One CLD record: one row of an LA's file, fields by snake_case name (derived from the spec)."
    return model


CLDRecord = record_model()
