"""The CLD specification as data: fields, headers, order, code lists per release, status rules.

The data lives in ``spec/cld_spec.json`` (written from the facts in shared/cld-spec, with their sources and
gaps). This module only loads it into typed, immutable objects; it contains no business rules.
An LA can replace or complete code lists with its own copy of the official lists (``load_code_list_override``)
without a code change.
"""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Iterable, Mapping
from datetime import date
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Release(StrEnum):
    """A release of the CLD specification."""

    R1 = "r1"
    R2 = "r2"


class Completeness(StrEnum):
    """How much of a code list is known. Only complete and probable lists are used to fail values."""

    COMPLETE = "complete"
    PROBABLE = "probable"
    PARTIAL = "partial"
    UNKNOWN = "unknown"

    @property
    def enforced(self) -> bool:
        return self in (Completeness.COMPLETE, Completeness.PROBABLE)


class FieldStatus(StrEnum):
    """The DQ report's field status vocabulary (rules.md section 4)."""

    MANDATORY = "Mandatory"
    APPLICABLE = "Applicable but not mandatory"
    NOT_APPLICABLE = "Not applicable"
    UNDETERMINED = "Undetermined"


class Validity(StrEnum):
    """The DQ report's validity vocabulary (rules.md section 4)."""

    VALID = "Passed: Valid"
    BLANK_NOT_MANDATORY = "Passed: Blank (Not Mandatory)"
    BLANK_MANDATORY = "Failed: Blank (Mandatory)"
    INVALID = "Failed: Invalid"
    RELEASE_1 = "Failed: Release 1"

    @property
    def failed(self) -> bool:
        return self.value.startswith("Failed")


_STATUS_WORDS: dict[str, FieldStatus] = {
    "mandatory": FieldStatus.MANDATORY,
    "applicable": FieldStatus.APPLICABLE,
    "not_applicable": FieldStatus.NOT_APPLICABLE,
    "undetermined": FieldStatus.UNDETERMINED,
}

FieldFormat = Literal[
    "code",
    "date",
    "nhs_number",
    "postcode",
    "identifier",
    "text",
    "integer",
    "decimal_2dp",
    "la_code",
    "ods_gp_practice_code",
    "cqc_location_id",
    "unknown",
]


NUMERIC_FORMATS: frozenset[str] = frozenset({"integer", "decimal_2dp"})
"""Formats whose values are numbers: the only fields where a JSON number is accepted (docs/contract.md, "Types").
Every other field takes text (a code, a date, an identifier such as an NHS number or an LA code, free text)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CodeValue(_Frozen):
    value: str
    key: str = Field(description="Release-independent meaning used by status rules and release mapping.")
    group: str | None = Field(default=None, description="Family of values (e.g. 'long_term' service types).")


class CodeList(_Frozen):
    completeness: Completeness
    values: tuple[CodeValue, ...] = ()
    note: str | None = None
    source: str | None = Field(default=None, description="Where the list came from (spec data or an LA override).")
    unverified_candidates: tuple[str, ...] = ()
    unverified_note: str | None = None

    def by_value(self) -> dict[str, CodeValue]:
        return {v.value: v for v in self.values}


class StatusCase(_Frozen):
    """One case of a field's status rule; the first case whose condition holds decides the status."""

    id: str
    when: dict[str, Any] | None = None
    then: Literal["mandatory", "applicable", "not_applicable", "undetermined"]
    cites: str
    why: str

    @property
    def status(self) -> FieldStatus:
        return _STATUS_WORDS[self.then]


class SpecField(_Frozen):
    order: int
    header: str = Field(description="The exact column header in the LA's file.")
    name: str = Field(description="snake_case name used on the wire and in code.")
    group: str
    format: FieldFormat
    format_note: str
    format_inferred: bool = False
    pii: bool = False
    in_file: bool | Literal["unknown"] = True
    releases: str | None = None
    status: tuple[StatusCase, ...]
    notes: str = ""
    sources: tuple[str, ...] = ()
    code_lists: dict[Release, CodeList] | None = None

    @property
    def numeric(self) -> bool:
        """A JSON number is accepted for this field (its format is in :data:`NUMERIC_FORMATS`)."""
        return self.format in NUMERIC_FORMATS

    def code_list(self, release: Release) -> CodeList | None:
        if self.code_lists is None:
            return None
        return self.code_lists.get(release)


class Rule(_Frozen):
    id: str
    name: str
    validity: Validity
    explanation: str
    cites: str


class ReleaseInfo(_Frozen):
    label: str
    valid_from: str
    case_sensitive: bool
    note: str


class ReleaseCutOver(_Frozen):
    """From when a release is in force, with where that date comes from and whether it is exact."""

    release: Release
    from_: date = Field(alias="from")
    exact: bool
    source: str
    note: str = ""


class ReleaseSelection(_Frozen):
    """Which release a record is checked against (the cut-overs as data, with their sources)."""

    by: Literal["reporting_period_end_date"]
    rule: str
    cut_overs: tuple[ReleaseCutOver, ...]

    def release_on(self, day: date) -> Release | None:
        """The release in force on ``day`` (the latest cut-over on or before it); None before the first."""
        chosen: ReleaseCutOver | None = None
        for c in self.cut_overs:
            if c.from_ <= day and (chosen is None or c.from_ >= chosen.from_):
                chosen = c
        return chosen.release if chosen is not None else None

    def cut_over(self, release: Release) -> ReleaseCutOver | None:
        return next((c for c in self.cut_overs if c.release == release), None)


class Spec(_Frozen):
    spec: str
    data_version: str
    about: str
    status_vocabulary: dict[str, str]
    releases: dict[Release, ReleaseInfo]
    release_selection: ReleaseSelection | None = None
    rules: tuple[Rule, ...]
    gaps: tuple[str, ...]
    fields: tuple[SpecField, ...]

    # ---- look-ups (cheap, derived) ----
    def field(self, name: str) -> SpecField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def by_name(self) -> dict[str, SpecField]:
        return {f.name: f for f in self.fields}

    def by_header(self) -> dict[str, SpecField]:
        return {f.header: f for f in self.fields}

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    @property
    def file_fields(self) -> tuple[SpecField, ...]:
        """Fields that are columns of the submission file, in file order (LA Code's presence is unknown)."""
        return tuple(f for f in self.fields if f.in_file is True)

    def with_code_lists(self, overrides: Mapping[tuple[str, Release], CodeList]) -> Spec:
        """A copy of the spec whose code lists are replaced by ``overrides`` (keyed by field name and release)."""
        known = self.by_name()
        for name, _release in overrides:
            if name not in known:
                raise CodeListError(f"code list override names an unknown field: {name!r}")
            if known[name].format != "code":
                raise CodeListError(f"field {known[name].header!r} is not a coded field")
        new_fields = []
        for f in self.fields:
            mine = {rel: cl for (n, rel), cl in overrides.items() if n == f.name}
            if not mine:
                new_fields.append(f)
                continue
            lists = dict(f.code_lists or {})
            lists.update(mine)
            new_fields.append(f.model_copy(update={"code_lists": lists}))
        return self.model_copy(update={"fields": tuple(new_fields)})


class CodeListError(ValueError):
    """An LA's code list override cannot be used; the message says why (no personal data is involved)."""


@cache
def load_spec() -> Spec:
    """The specification shipped with this package (loaded once per process)."""
    text = resources.files("cld_schemas").joinpath("spec/cld_spec.json").read_text(encoding="utf-8")
    return Spec.model_validate(json.loads(text))


# ---------------------------------------------------------------------------------------------------------
# LA code list overrides: the official lists, loaded without a code change.
# CSV or JSON with one row per value: field (spec header or snake name), release (r1/r2), value,
# optional key (meaning shared across releases, used by status rules) and group. An .xlsx whose first sheet
# has those column headings is read the same way. A field+release named in the override is replaced whole
# and marked complete: the LA asserts it holds the official list.
# ---------------------------------------------------------------------------------------------------------


def load_code_list_override(path: Path, *, spec: Spec | None = None) -> dict[tuple[str, Release], CodeList]:
    spec = spec or load_spec()
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            rows = _rows_from_json(path)
        elif suffix == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as fh:
                rows = list(csv.DictReader(fh))
        elif suffix == ".xlsx":
            rows = _rows_from_xlsx(path)
        else:
            raise CodeListError(f"code list file must be .csv, .json or .xlsx, not {suffix or 'no extension'!r}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise CodeListError(f"cannot read code list file {path.name}: {type(exc).__name__}") from exc
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        if isinstance(exc, CodeListError):
            raise
        raise CodeListError(f"cannot read code list file {path.name}: not a valid {suffix} file") from exc
    return _build_overrides(rows, spec=spec, source=path.name)


def _rows_from_json(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "values" in data:
        data = data["values"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise CodeListError('JSON code list must be a list of {"field", "release", "value"} objects')
    return data


def _rows_from_xlsx(path: Path) -> list[dict[str, Any]]:
    """The rows under the first heading row found: the override layout (``field``, ``release``, ``value``) or NHS
    England's mapping workbook layout (``Variable``, ``Release 2 value``, ...), on whichever sheet holds one
    (a cover or notes sheet before it is skipped), within the first rows of the sheet."""
    from openpyxl import load_workbook  # imported lazily: only LAs loading a workbook need it

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several unrelated types for a file that is not a workbook
        raise CodeListError(f"cannot read code list file {path.name}: not a valid .xlsx workbook") from exc
    try:
        content = False
        for ws in wb.worksheets:
            it = ws.iter_rows(values_only=True)
            for _ in range(_HEADING_SEARCH_ROWS):
                cells = next(it, None)
                if cells is None:
                    break
                content = content or any(c is not None and str(c).strip() for c in cells)
                header = [str(c).strip().lower() if c is not None else "" for c in cells]
                if not (_is_override_heading(header) or all(c in header for c in MAPPING_WORKBOOK_COLUMNS)):
                    continue
                return [
                    {h: ("" if c is None else str(c)) for h, c in zip(header, row, strict=False) if h}
                    for row in it
                    if any(c is not None and str(c).strip() for c in row)
                ]
        if not content:
            raise CodeListError("code list file holds no values")
        raise CodeListError(
            f"{path.name}: no sheet has a heading row with field, release and value (the override layout) or "
            "Variable and Release 2 value (NHS England's mapping workbook)"
        )
    finally:
        wb.close()


_HEADING_SEARCH_ROWS = 20


def _is_override_heading(header: list[str]) -> bool:
    return all(c in header for c in ("field", "release", "value"))


MAPPING_WORKBOOK_COLUMNS = ("variable", "release 2 value")
"""Column headings (lower-cased) that mark NHS England's Release 2 mapping workbook layout (shared/cld-spec
sources: `Variable`, `Release 2 value`, `comparison`, and, where present, the Release 1 value it replaces)."""

_MAPPING_R1_COLUMNS = ("release 1 value", "release 1 values", "r1 value")


def _field_lookup(spec: Spec) -> dict[str, SpecField]:
    """Every way an LA may name a field: spec header, snake name, national name (``Service_Type``)."""
    out: dict[str, SpecField] = {}
    for f in spec.fields:
        out[f.header.lower()] = f
        out[f.name] = f
        out[f.name.replace("_", " ")] = f
        out["".join(ch for ch in f.header.lower() if ch.isalnum())] = f
    return out


def _find_field(lookup: Mapping[str, SpecField], ref: str) -> SpecField | None:
    ref = ref.strip()
    return (
        lookup.get(ref)
        or lookup.get(ref.lower())
        or lookup.get(ref.lower().replace("_", " "))
        or lookup.get("".join(ch for ch in ref.lower() if ch.isalnum()))
    )


def _from_mapping_workbook(rows: list[dict[str, str]], *, spec: Spec) -> list[dict[str, str]]:
    """Rows of the R2 mapping workbook layout as override rows (field, release, value, key).

    Each row gives a Release 2 value of a variable (blank rows and blank values are skipped). Where the row also
    holds the Release 1 value it replaces, both get one shared key (the meaning the R1->R2 conversion uses): the
    spec data's key for either value when it knows one, else a slug of the Release 2 value. Rows of fields that
    are not coded (the workbook lists every variable) are skipped, not refused.
    """
    lookup = _field_lookup(spec)
    r1_col = next((c for c in _MAPPING_R1_COLUMNS if rows and c in rows[0]), None)
    out: list[dict[str, str]] = []
    for n, row in enumerate(rows, start=2):  # the heading is line 1 of the sheet
        ref = row.get("variable", "").strip()
        r2 = row.get("release 2 value", "").strip()
        if not ref and not r2:
            continue
        f = _find_field(lookup, ref)
        if f is None:
            raise CodeListError(f"row {n}: unknown variable {ref[:80]!r}")
        if f.format != "code" or not r2:
            continue
        r1 = row.get(r1_col, "").strip() if r1_col else ""
        key = _known_key(f, r2, Release.R2) or (_known_key(f, r1, Release.R1) if r1 else None) or _key_for(f, r2)
        out.append({"field": f.name, "release": "r2", "value": r2, "key": key})
        if r1:
            out.append({"field": f.name, "release": "r1", "value": r1, "key": key})
    return out


def _known_key(f: SpecField, value: str, release: Release) -> str | None:
    cl = f.code_list(release)
    if cl is None:
        return None
    cv = cl.by_value().get(value)
    return cv.key if cv is not None else None


def _build_overrides(
    rows: Iterable[Mapping[str, Any]], *, spec: Spec, source: str
) -> dict[tuple[str, Release], CodeList]:
    lookup = _field_lookup(spec)
    normalised = [{str(k).strip().lower(): ("" if v is None else str(v)) for k, v in raw.items()} for raw in rows]
    if normalised and all(c in normalised[0] for c in MAPPING_WORKBOOK_COLUMNS) and "field" not in normalised[0]:
        normalised = _from_mapping_workbook(normalised, spec=spec)
    collected: dict[tuple[str, Release], list[CodeValue]] = {}
    seen: set[tuple[str, Release, str]] = set()
    for n, row in enumerate(normalised, start=1):
        field_ref = row.get("field", "").strip()
        f = _find_field(lookup, field_ref)
        if f is None:
            raise CodeListError(f"row {n}: unknown field {field_ref!r}")
        if f.format != "code":
            raise CodeListError(f"row {n}: field {f.header!r} is not a coded field")
        try:
            release = Release(row.get("release", "").strip().lower())
        except ValueError:
            raise CodeListError(f"row {n}: release must be r1 or r2") from None
        value = row.get("value", "").strip()
        if not value:
            raise CodeListError(f"row {n}: value is blank")
        if (f.name, release, value) in seen:  # a value listed twice (the mapping workbook repeats R1 values)
            continue
        seen.add((f.name, release, value))
        key = row.get("key", "").strip() or _key_for(f, value)
        group = row.get("group", "").strip() or _group_for(f, value)
        collected.setdefault((f.name, release), []).append(CodeValue(value=value, key=key, group=group))
    if not collected:
        raise CodeListError("code list file holds no values")
    return {
        k: CodeList(completeness=Completeness.COMPLETE, values=tuple(v), source=f"LA override ({source})")
        for k, v in collected.items()
    }


def _key_for(f: SpecField, value: str) -> str:
    """Reuse the meaning of a value the spec data already knows (in any release), else a slug of it."""
    for cl in (f.code_lists or {}).values():
        for cv in cl.values:
            if cv.value == value:
                return cv.key
    return "".join(ch if ch.isalnum() else "_" for ch in value.lower()).strip("_")


def _group_for(f: SpecField, value: str) -> str | None:
    for cl in (f.code_lists or {}).values():
        for cv in cl.values:
            if cv.value == value:
                return cv.group
    return None
