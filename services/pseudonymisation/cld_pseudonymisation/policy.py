"""The pseudonymisation policy as data: what happens to each field of the CLD specification, and why.

The policy lives in ``policy.json`` next to this module. :func:`load_policy` refuses a policy that does not
cover every field of the spec exactly once, so a new spec field cannot slip through unhandled, and refuses
to ``keep`` a field the spec marks as personal data or as free text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from cld_schemas.spec import Spec, SpecField, load_spec


class PolicyError(ValueError):
    """The policy cannot be used; the message names the field and the problem (never a data value)."""


class Action(StrEnum):
    KEEP = "keep"
    DROP = "drop"
    PSEUDONYMISE = "pseudonymise"
    GENERALISE = "generalise"


class Method(StrEnum):
    """Generalisation methods and the spec formats they apply to."""

    BIRTH_YEAR_MONTH_AGE_BAND = "birth_year_month_age_band"
    """A date of birth -> ``birth_year``, ``birth_month``, ``age_band_period_end``."""
    MONTH = "month"
    """A date -> ``<name without 'date_of_'>_month`` as yyyy-mm (date_of_death -> death_month)."""
    POSTCODE_GEOGRAPHY = "postcode_geography"
    """A postcode -> ``postcode_sector``, ``postcode_district``, ``lsoa``, ``msoa`` (the last two need a lookup)."""
    CONVERSATION_FLAG = "conversation_flag"
    """Free text -> ``conversation_flag``: 'Yes' when it mentions 'conversation', else 'No'."""


class Namespace(StrEnum):
    """Pseudonymised identifiers in the same namespace share pseudonyms (so links survive)."""

    NHS_NUMBER = "nhs_number"
    LA_PERSON = "la_person"
    EVENT_REFERENCE = "event_reference"

    @property
    def la_scoped(self) -> bool:
        """LA-issued identifiers are only unique within one LA: the record's LA code is part of the message."""
        return self is not Namespace.NHS_NUMBER


_METHOD_FORMATS: dict[Method, frozenset[str]] = {
    Method.BIRTH_YEAR_MONTH_AGE_BAND: frozenset({"date"}),
    Method.MONTH: frozenset({"date"}),
    Method.POSTCODE_GEOGRAPHY: frozenset({"postcode"}),
    Method.CONVERSATION_FLAG: frozenset({"text"}),
}

AGE_BAND_FIELD = "age_band_period_end"


def method_outputs(method: Method, field_name: str) -> tuple[str, ...]:
    """The output field names a generalisation method produces for a field."""
    if method is Method.BIRTH_YEAR_MONTH_AGE_BAND:
        return ("birth_year", "birth_month", AGE_BAND_FIELD)
    if method is Method.MONTH:
        return (f"{field_name.removeprefix('date_of_')}_month",)
    if method is Method.POSTCODE_GEOGRAPHY:
        return ("postcode_sector", "postcode_district", "lsoa", "msoa")
    return ("conversation_flag",)


@dataclass(frozen=True, slots=True)
class FieldPolicy:
    name: str
    header: str
    action: Action
    why: str
    method: Method | None = None
    namespace: Namespace | None = None

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names this field becomes in the pseudonymised record (empty when dropped)."""
        if self.action is Action.KEEP:
            return (self.name,)
        if self.action is Action.PSEUDONYMISE:
            return (f"{self.name}_pseudo",)
        if self.action is Action.GENERALISE:
            assert self.method is not None
            return method_outputs(self.method, self.name)
        return ()


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    about: str
    fields: tuple[FieldPolicy, ...]
    """In spec order."""

    def field(self, name: str) -> FieldPolicy:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def output_fields(self) -> tuple[str, ...]:
        """Every output field name, in spec order, without duplicates."""
        seen: dict[str, None] = {}
        for f in self.fields:
            for o in f.outputs:
                seen.setdefault(o, None)
        return tuple(seen)


def load_policy(path: Path | None = None, *, spec: Spec | None = None) -> Policy:
    """Load and check the policy (the shipped ``policy.json`` unless ``path`` is given)."""
    try:
        if path is None:
            text = resources.files("cld_pseudonymisation").joinpath("policy.json").read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyError(f"cannot read the policy file: {type(exc).__name__}") from None
    return policy_from_data(data, spec=spec or load_spec())


def policy_from_data(data: Any, *, spec: Spec) -> Policy:
    if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
        raise PolicyError('the policy must be a JSON object with a "fields" object')
    entries: dict[str, Any] = data["fields"]
    spec_names = [f.name for f in spec.fields]
    missing = [n for n in spec_names if n not in entries]
    if missing:
        raise PolicyError(f"the policy has no entry for spec field(s): {', '.join(missing)}")
    unknown = sorted(set(entries) - set(spec_names))
    if unknown:
        raise PolicyError(f"the policy names field(s) the spec does not have: {', '.join(unknown)}")
    fields = tuple(_field_policy(f, entries[f.name]) for f in spec.fields)
    policy = Policy(version=str(data.get("policy_version", "")), about=str(data.get("about", "")), fields=fields)
    outputs = [o for f in fields for o in f.outputs]
    clashes = sorted({o for o in outputs if outputs.count(o) > 1})
    if clashes:
        raise PolicyError(f"two fields produce the same output name(s): {', '.join(clashes)}")
    return policy


def _field_policy(spec_field: SpecField, entry: Any) -> FieldPolicy:
    name = spec_field.name
    if not isinstance(entry, dict):
        raise PolicyError(f"{name}: the entry must be an object")
    try:
        action = Action(str(entry.get("action")))
    except ValueError:
        raise PolicyError(f"{name}: action must be one of {', '.join(a.value for a in Action)}") from None
    why = entry.get("why")
    if not isinstance(why, str) or len(why.strip()) < 10:
        raise PolicyError(f"{name}: 'why' must explain the decision in plain words")
    extra = set(entry) - {"action", "why", "method", "namespace"}
    if extra:
        raise PolicyError(f"{name}: unknown key(s) {', '.join(sorted(extra))}")
    method: Method | None = None
    namespace: Namespace | None = None
    if action is Action.KEEP and (spec_field.pii or spec_field.format == "text"):
        raise PolicyError(f"{name}: the spec marks this field as personal data or free text; it cannot be kept")
    if action is Action.GENERALISE:
        try:
            method = Method(str(entry.get("method")))
        except ValueError:
            raise PolicyError(f"{name}: method must be one of {', '.join(m.value for m in Method)}") from None
        if spec_field.format not in _METHOD_FORMATS[method]:
            raise PolicyError(f"{name}: method {method.value} does not apply to a {spec_field.format} field")
    elif "method" in entry:
        raise PolicyError(f"{name}: 'method' only applies to action generalise")
    if action is Action.PSEUDONYMISE:
        try:
            namespace = Namespace(str(entry.get("namespace")))
        except ValueError:
            raise PolicyError(f"{name}: namespace must be one of {', '.join(n.value for n in Namespace)}") from None
    elif "namespace" in entry:
        raise PolicyError(f"{name}: 'namespace' only applies to action pseudonymise")
    return FieldPolicy(
        name=name,
        header=spec_field.header,
        action=action,
        why=" ".join(why.split()),
        method=method,
        namespace=namespace,
    )
