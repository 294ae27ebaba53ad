"""Mapping coded values between releases through the spec's shared keys (pure; no files).

Each code value in the spec data carries a ``key``: the release-independent meaning of the value. A Release 1
label maps to the Release 2 value with the same key when there is exactly one; when there is none, or more than
one, the value cannot be mapped and the caller reports it (never guesses). A value that is already a value of the
target release is left as it is. Only coded fields are mapped; every other cell is copied unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from cld_schemas.spec import Release, Spec, SpecField


class Unmapped(StrEnum):
    """Why a value could not be mapped to the target release."""

    NOT_IN_SOURCE = "not a value of the source release"
    NO_TARGET = "no value of the target release has the same meaning"
    AMBIGUOUS = "several values of the target release have the same meaning"
    TARGET_UNKNOWN = "the target release's list is not known"


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """How one coded field's values map from one release to another."""

    field: SpecField
    mapped: Mapping[str, str]
    """Source value -> target value (identity for values already in the target list)."""
    unmapped: Mapping[str, Unmapped]
    """Known source values that cannot be mapped, with the reason."""
    target_known: bool

    def map(self, value: str) -> tuple[str, Unmapped | None]:
        """The target value for ``value`` (stripped), or the value unchanged with the reason it was not mapped."""
        if value in self.mapped:
            return self.mapped[value], None
        if value in self.unmapped:
            return value, self.unmapped[value]
        if not self.target_known:
            return value, Unmapped.TARGET_UNKNOWN
        return value, Unmapped.NOT_IN_SOURCE


def field_mapping(field: SpecField, *, source: Release, target: Release) -> FieldMapping:
    src = field.code_list(source)
    dst = field.code_list(target)
    target_values = dst.values if dst is not None else ()
    by_key: dict[str, list[str]] = {}
    for cv in target_values:
        by_key.setdefault(cv.key, []).append(cv.value)
    mapped: dict[str, str] = {cv.value: cv.value for cv in target_values}
    unmapped: dict[str, Unmapped] = {}
    for cv in src.values if src is not None else ():
        if cv.value in mapped:
            continue
        candidates = by_key.get(cv.key, [])
        if len(candidates) == 1:
            mapped[cv.value] = candidates[0]
        elif not target_values:
            unmapped[cv.value] = Unmapped.TARGET_UNKNOWN
        elif candidates:
            unmapped[cv.value] = Unmapped.AMBIGUOUS
        else:
            unmapped[cv.value] = Unmapped.NO_TARGET
    return FieldMapping(field=field, mapped=mapped, unmapped=unmapped, target_known=bool(target_values))


def release_mappings(spec: Spec, *, source: Release, target: Release) -> dict[str, FieldMapping]:
    """A :class:`FieldMapping` for every coded field of the spec, by snake_case name."""
    return {
        f.name: field_mapping(f, source=source, target=target)
        for f in spec.fields
        if f.format == "code" and f.code_lists
    }
