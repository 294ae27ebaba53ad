"""The reference engine: record-level validation of CLD rows, one row at a time, in the central DQ report's
vocabulary. Pure functions, no I/O.

Since issue 11 the production paths (``cld validate``, the validation service) run the columnar engine
(``cld_validation.columnar``) only; this per-row ``Validator`` is kept as the oracle the columnar engine is held to
(the differential property test, the golden corpus builder). Production code must not import it (an import-linter
contract says so).

For every field of every row: a status (Mandatory, Applicable but not mandatory, Not applicable, Undetermined)
from the field's status rule in the spec data, and a validity (Passed: Valid, Passed: Blank (Not Mandatory),
Failed: Blank (Mandatory), Failed: Invalid, Failed: Release 1). Only failures become findings; values whose code
list is not known well enough to judge are counted as *unchecked*, never failed (sources.md open questions 1-2).

Messages never contain a value from the row (rules.md section 4: identifying values are 'N/A - PID'); they may
quote the specification's own code values, which are not personal data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

from cld_schemas.contract import LA_CODE_PATTERN
from cld_schemas.spec import (
    CodeList,
    Completeness,
    FieldStatus,
    Release,
    Spec,
    SpecField,
    StatusCase,
    Validity,
    load_spec,
)
from cld_validation import fixes
from cld_validation.findings import CARER_FIELDS as CARER_FIELDS
from cld_validation.findings import EVENT_GROUPS as EVENT_GROUPS
from cld_validation.findings import MAX_TEXT_LENGTH as MAX_TEXT_LENGTH
from cld_validation.findings import FieldFinding as FieldFinding

_DATE_RE: Final = re.compile(r"\d{2}/\d{2}/\d{4}", re.ASCII)
_NHS_RE: Final = re.compile(r"\d{10}", re.ASCII)
# UK postcode shape (format inferred in fields.json): outward code, optional single space, inward code.
_POSTCODE_RE: Final = re.compile(r"(?i)(GIR ?0AA|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2})", re.ASCII)
_DECIMAL_RE: Final = re.compile(r"-?\d{1,16}(\.\d{1,2})?", re.ASCII)  # NUMERIC(18,2) as the LA-side validator casts it
_DECIMAL_ANY_RE: Final = re.compile(r"-?\d+(\.\d+)?", re.ASCII)
_INTEGER_RE: Final = re.compile(r"\d{1,6}", re.ASCII)
_LA_CODE_RE: Final = re.compile(LA_CODE_PATTERN)  # the contract's, as the LA Code format rule (CLD050)
_ODS_RE: Final = re.compile(r"[A-Z]\d{5}", re.ASCII)
_CQC_RE: Final = re.compile(r"1-\d{1,12}", re.ASCII)

_UNSET = object()


@dataclass(slots=True)
class RowResult:
    statuses: list[FieldStatus]
    validities: list[Validity]
    findings: list[FieldFinding] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    """Names of fields whose non-blank value could not be checked against a complete code list."""
    plan_statuses: tuple[FieldStatus, ...] = ()
    """The same tuple object for every row of the same status plan (lets callers count statuses cheaply)."""

    @property
    def failed(self) -> bool:
        return bool(self.findings)


class _Code:
    """A field's code list prepared for one release: exact, case-folded and other-release look-ups."""

    __slots__ = (
        "completeness",
        "enforced",
        "exact",
        "folded",
        "label",
        "other_exact",
        "other_folded",
        "other_key_in_mine",
    )

    def __init__(self, mine: CodeList | None, other: CodeList | None, release: Release) -> None:
        self.completeness = mine.completeness if mine else Completeness.UNKNOWN
        self.enforced = self.completeness.enforced
        values = mine.values if mine else ()
        self.exact: dict[str, tuple[str, str | None]] = {v.value: (v.key, v.group) for v in values}
        self.folded: dict[str, tuple[str, str | None, str]] = {
            _fold(v.value): (v.key, v.group, v.value) for v in values
        }
        other_values = other.values if other else ()
        self.other_exact: dict[str, tuple[str, str | None]] = {
            v.value: (v.key, v.group) for v in other_values if v.value not in self.exact
        }
        self.other_folded: dict[str, tuple[str, str | None]] = {_fold(v.value): (v.key, v.group) for v in other_values}
        keys_in_mine = {v.key for v in values}
        # An other-release value whose meaning has a *different* wording in this release is certainly outdated.
        self.other_key_in_mine = {v.value for v in other_values if v.key in keys_in_mine and v.value not in self.exact}
        self.label = f"{len(values)} values, list {self.completeness.value}"

    def meaning(self, value: str) -> tuple[str, str | None] | None:
        """Key and group of a value, tolerant of case (the intent is clear even when the value fails)."""
        hit = self.exact.get(value)
        if hit is not None:
            return hit
        f = _fold(value)
        hit3 = self.folded.get(f)
        if hit3 is not None:
            return hit3[0], hit3[1]
        return self.other_exact.get(value) or self.other_folded.get(f)


def _fold(value: str) -> str:
    return " ".join(value.casefold().split())


Condition = Callable[["_Facts"], bool | None]


class _Facts:
    """What status rules may ask of a row, computed lazily and at most once."""

    __slots__ = ("_age", "_codes", "_dates", "_meanings", "_rec")

    def __init__(self, rec: Mapping[str, str | None], codes: Mapping[str, _Code], dates: Callable[[str], Any]) -> None:
        self._rec = rec
        self._codes = codes
        self._meanings: dict[str, tuple[str, str | None] | None] = {}
        self._age: int | object | None = _UNSET
        self._dates = dates

    def meaning(self, name: str) -> tuple[str, str | None] | None:
        if name in self._meanings:
            return self._meanings[name]
        v = self._rec.get(name)
        m = self._codes[name].meaning(v) if v else None
        self._meanings[name] = m
        return m

    @property
    def raw(self) -> Mapping[str, str | None]:
        return self._rec

    def present(self, name: str) -> bool:
        return bool(self._rec.get(name))

    def age_at_period_end(self) -> int | None:
        if self._age is _UNSET:
            dob = self._dates(self._rec.get("date_of_birth") or "")
            end = self._dates(self._rec.get("reporting_period_end_date") or "")
            if dob is not None and end is not None:
                self._age = end.year - dob.year - ((end.month, end.day) < (dob.month, dob.day))
            else:
                self._age = None
        return self._age  # type: ignore[return-value]


def _compile_condition(spec_when: Mapping[str, Any], coded: set[str]) -> Condition:
    """Turn a status case's ``when`` (spec data) into a tri-state predicate: True, False or None (unknown)."""
    parts: list[Condition] = []
    for k, arg in spec_when.items():
        if k == "all":
            subs = [_compile_condition(c, coded) for c in arg]
            parts.append(_all(subs))
        elif k == "any":
            subs = [_compile_condition(c, coded) for c in arg]
            parts.append(_any(subs))
        elif k == "not":
            parts.append(_not(_compile_condition(arg, coded)))
        elif k == "present":
            parts.append(_present(arg))
        elif k == "age_at_period_end":
            parts.append(_age_between(int(arg[0]), int(arg[1])))
        elif k.endswith("_group") and k.removesuffix("_group") in coded:
            parts.append(_member(k.removesuffix("_group"), frozenset(arg), index=1))
        elif k in coded:
            parts.append(_member(k, frozenset(arg), index=0))
        else:
            raise ValueError(f"status condition names an unknown or uncoded field: {k!r}")
    return parts[0] if len(parts) == 1 else _all(parts)


def _not(sub: Condition) -> Condition:
    def cond(facts: _Facts) -> bool | None:
        r = sub(facts)
        return None if r is None else not r

    return cond


def _present(name: str) -> Condition:
    def cond(facts: _Facts) -> bool | None:
        return facts.present(name)

    return cond


def _age_between(lo: int, hi: int) -> Condition:
    def cond(facts: _Facts) -> bool | None:
        age = facts.age_at_period_end()
        return None if age is None else lo <= age <= hi

    return cond


def _member(name: str, wanted: frozenset[str], *, index: int) -> Condition:
    def cond(facts: _Facts) -> bool | None:
        m = facts.meaning(name)
        if m is None:
            return None
        return m[index] in wanted

    return cond


def _all(subs: list[Condition]) -> Condition:
    def cond(facts: _Facts) -> bool | None:
        unknown = False
        for s in subs:
            r = s(facts)
            if r is False:
                return False
            if r is None:
                unknown = True
        return None if unknown else True

    return cond


def _any(subs: list[Condition]) -> Condition:
    def cond(facts: _Facts) -> bool | None:
        unknown = False
        for s in subs:
            r = s(facts)
            if r is True:
                return True
            if r is None:
                unknown = True
        return None if unknown else False

    return cond


@dataclass(frozen=True, slots=True)
class _CompiledField:
    index: int
    spec: SpecField
    cases: tuple[tuple[StatusCase, Condition | None], ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    statuses: tuple[FieldStatus, ...]
    blank_validities: tuple[Validity, ...]
    mandatory: dict[int, StatusCase]


def _inputs(when: Any, coded: set[str], out: dict[str, list[Any]]) -> None:
    """Collect what a condition reads: coded fields, presence checks and age ranges."""
    if isinstance(when, list):
        for w in when:
            _inputs(w, coded, out)
        return
    for k, arg in when.items():
        if k in ("all", "any") or k == "not":
            _inputs(arg, coded, out)
        elif k == "present":
            out["present"].append(arg)
        elif k == "age_at_period_end":
            out["age"].append(tuple(arg))
        else:
            out["coded"].append(k.removesuffix("_group") if k.removesuffix("_group") in coded else k)


class Validator:
    """Validates rows against one release of one spec. Build once, call ``validate`` per row."""

    def __init__(self, spec: Spec, release: Release, *, absent: frozenset[str] = frozenset()) -> None:
        """``absent``: field names that are not columns of the file at hand (reported once, not per row)."""
        self.spec = spec
        self.release = release
        self.release_label = spec.releases[release].label
        other = Release.R1 if release is Release.R2 else Release.R2
        self.fields = tuple(sorted(spec.fields, key=lambda f: f.order))
        self.names = tuple(f.name for f in self.fields)
        self.codes: dict[str, _Code] = {
            f.name: _Code(f.code_list(release), f.code_list(other), release) for f in self.fields if f.format == "code"
        }
        coded = set(self.codes)
        self.compiled = tuple(
            _CompiledField(
                index=i,
                spec=f,
                cases=tuple((c, _compile_condition(c.when, coded) if c.when else None) for c in f.status),
            )
            for i, f in enumerate(self.fields)
        )
        self.rule_text = {r.id: r for r in spec.rules}
        inputs: dict[str, list[Any]] = {"coded": [], "present": [], "age": []}
        for f in self.fields:
            for c in f.status:
                if c.when:
                    _inputs(c.when, coded, inputs)
        self._coded_inputs = tuple(dict.fromkeys(inputs["coded"]))
        self._present_inputs = tuple(dict.fromkeys(inputs["present"]))
        self._age_ranges: tuple[tuple[int, int], ...] = tuple(dict.fromkeys(inputs["age"]))
        self._plans: dict[object, _Plan] = {}
        self._date_cache: dict[str, date | str] = {}
        # Tuples in spec order (not sets): findings come out in the same order in every process (a set's order
        # follows the string hash seed, which differs per process).
        self._ckba_event_fields = tuple(f.name for f in self.fields if f.group in EVENT_GROUPS)
        self._carer_fields = tuple(f.name for f in self.fields if f.name in CARER_FIELDS)
        self._index = {n: i for i, n in enumerate(self.names)}
        self._absent = frozenset(self._index[n] for n in absent)
        self._quick: dict[str, tuple[int, int, Any]] = {
            f.name: (i, *self._quick_check(f)) for i, f in enumerate(self.fields)
        }

    # ---- value parsing ----
    def parse_date(self, value: str) -> date | str:
        """A date, or the rule id of why it is not one (cached: dates repeat a lot in CLD files)."""
        hit = self._date_cache.get(value)
        if hit is not None:
            return hit
        result: date | str
        if not _DATE_RE.fullmatch(value):
            result = "CLD010"
        else:
            try:
                result = date(int(value[6:10]), int(value[3:5]), int(value[0:2]))
            except ValueError:
                result = "CLD011"
        if len(self._date_cache) > 200_000:
            self._date_cache.clear()
        self._date_cache[value] = result
        return result

    def _date_or_none(self, value: str) -> date | None:
        r = self.parse_date(value) if value else None
        return r if isinstance(r, date) else None

    # ---- the row ----
    def validate(self, rec: Mapping[str, str | None]) -> RowResult:
        facts = _Facts(rec, self.codes, self._date_or_none)
        plan = self._plan(facts)
        statuses = list(plan.statuses)
        validities = list(plan.blank_validities)
        result = RowResult(statuses=statuses, validities=validities, plan_statuses=plan.statuses)
        findings = result.findings
        info = self._quick
        fields = self.fields
        valid = Validity.VALID
        dates = self._date_cache
        for name, value in rec.items():
            if not value:
                continue
            q = info.get(name)
            if q is None:
                continue
            i, kind, arg = q
            # The common case, inline: a plainly valid value (kinds from _quick_check).
            if (
                (kind == 0 and value in arg)
                or (kind == 1 and type(dates.get(value)) is date)
                or (kind == 2 and arg(value) is not None)
                or (kind == 3 and len(value) <= MAX_TEXT_LENGTH)
            ):
                validities[i] = valid
                continue
            validity, rule, message = self._check_value(fields[i], value, result)
            validities[i] = validity
            if rule is not None:
                findings.append(
                    FieldFinding(
                        name, fields[i].header, statuses[i], validity, rule, message, self._fix(fields[i], rule, value)
                    )
                )
        for i, case in plan.mandatory.items():
            name = self.names[i]
            if not rec.get(name) and i not in self._absent:
                f = fields[i]
                findings.append(
                    FieldFinding(
                        name,
                        f.header,
                        FieldStatus.MANDATORY,
                        Validity.BLANK_MANDATORY,
                        case.id,
                        f"{f.header} is blank but Mandatory here: {case.why} ({case.cites}).",
                        fixes.blank_mandatory_fix(f, case, event_type=self._event_label(rec)),
                    )
                )
        if len(findings) > 1:
            index = self._index
            findings.sort(key=lambda fnd: index[fnd.name])  # report in file order, like the DQ report
        self._cross_field(rec, facts, result)
        return result

    def _plan(self, facts: _Facts) -> _Plan:
        """Statuses depend only on a handful of facts (client type, event type, ...): compute once per combination."""
        # The raw values of the deciding fields (not their meanings) key the cache: a hit costs a few look-ups.
        get = facts.raw.get
        age = facts.age_at_period_end() if self._age_ranges else None
        sig = (
            tuple(map(get, self._coded_inputs)),
            tuple(bool(get(n)) for n in self._present_inputs),
            None if age is None else tuple(lo <= age <= hi for lo, hi in self._age_ranges),
        )
        plan = self._plans.get(sig)
        if plan is None:
            statuses: list[FieldStatus] = []
            mandatory: dict[int, StatusCase] = {}
            for cf in self.compiled:
                status, case = _status(cf, facts)
                statuses.append(status)
                if status is FieldStatus.MANDATORY and case is not None:
                    mandatory[cf.index] = case
            plan = _Plan(
                statuses=tuple(statuses),
                blank_validities=tuple(
                    Validity.BLANK_MANDATORY if s is FieldStatus.MANDATORY else Validity.BLANK_NOT_MANDATORY
                    for s in statuses
                ),
                mandatory=mandatory,
            )
            if len(self._plans) > 50_000:
                self._plans.clear()
            self._plans[sig] = plan
        return plan

    def _quick_check(self, f: SpecField) -> tuple[int, Any]:
        """How ``validate`` recognises a plainly valid value without the full check: (kind, argument).

        0: membership of the exact code list; 1: an already-parsed real date; 2: a regex's fullmatch;
        3: length within bounds; 4: always do the full check. True only for values the full check passes.
        """
        fmt = f.format
        if fmt == "code":
            return 0, self.codes[f.name].exact
        if fmt == "date":
            return 1, None
        regex = {
            "postcode": _POSTCODE_RE,
            "decimal_2dp": _DECIMAL_RE,
            "integer": _INTEGER_RE,
            "la_code": _LA_CODE_RE,
            "ods_gp_practice_code": _ODS_RE,
            "cqc_location_id": _CQC_RE,
        }.get(fmt)
        if regex is not None:
            return 2, regex.fullmatch
        if fmt in ("text", "identifier"):
            return 3, None
        return 4, None

    def _check_value(self, f: SpecField, value: str, result: RowResult) -> tuple[Validity, str | None, str]:
        fmt = f.format
        if len(value) > MAX_TEXT_LENGTH:
            return Validity.INVALID, "CLD053", f"{f.header} is longer than {MAX_TEXT_LENGTH} characters."
        if fmt == "code":
            return self._check_code(f, value, result)
        if fmt == "date":
            d = self.parse_date(value)
            if isinstance(d, date):
                return Validity.VALID, None, ""
            if d == "CLD010":
                return Validity.INVALID, "CLD010", f"{f.header} is not written dd/mm/yyyy."
            return Validity.INVALID, "CLD011", f"{f.header} is not a real calendar date."
        if fmt == "nhs_number":
            if not _NHS_RE.fullmatch(value):
                return Validity.INVALID, "CLD020", "NHS Number is not 10 digits (no spaces or other characters)."
            if not nhs_check_digit_ok(value):
                return Validity.INVALID, "CLD021", "NHS Number fails the Modulus 11 check digit."
            return Validity.VALID, None, ""
        if fmt == "postcode":
            if _POSTCODE_RE.fullmatch(value):
                return Validity.VALID, None, ""
            return Validity.INVALID, "CLD030", "Postcode does not have the shape of a UK postcode."
        if fmt == "decimal_2dp":
            if _DECIMAL_RE.fullmatch(value):
                return Validity.VALID, None, ""
            if _DECIMAL_ANY_RE.fullmatch(value):
                if "." in value and len(value.split(".", 1)[1]) > 2:
                    return Validity.INVALID, "CLD040", f"{f.header} has more than two decimal places."
                return Validity.INVALID, "CLD040", f"{f.header} has more than 16 digits before the decimal point."
            return Validity.INVALID, "CLD040", f"{f.header} is not a number with up to two decimal places."
        if fmt == "integer":
            if _INTEGER_RE.fullmatch(value):
                return Validity.VALID, None, ""
            return Validity.INVALID, "CLD041", f"{f.header} is not a whole number of 0 or more."
        if fmt == "la_code":
            if _LA_CODE_RE.fullmatch(value):
                return Validity.VALID, None, ""
            return Validity.INVALID, "CLD050", "LA Code is not a 3-digit number."
        if fmt == "ods_gp_practice_code":
            if _ODS_RE.fullmatch(value):
                return Validity.VALID, None, ""
            return Validity.INVALID, "CLD051", "GP Practice Code is not one letter and five digits (ODS code)."
        if fmt == "cqc_location_id":
            if _CQC_RE.fullmatch(value):
                return Validity.VALID, None, ""
            return Validity.INVALID, "CLD052", "Provider CQC Location ID does not look like '1-' followed by digits."
        if fmt == "unknown":
            result.unchecked.append(f.name)
        return Validity.VALID, None, ""

    def _event_label(self, rec: Mapping[str, str | None]) -> str | None:
        """The row's Event Type when it is exactly a defined value (so never personal), else None."""
        v = rec.get("event_type")
        code = self.codes.get("event_type")
        return v if v and code is not None and v in code.exact else None

    def _fix(self, f: SpecField, rule: str, value: str) -> str:
        """The fix for a failed value (computed only for failures, so passing rows pay nothing)."""
        fmt = f.format
        if rule == "CLD053":
            return fixes.too_long_fix(f, MAX_TEXT_LENGTH)
        if fmt == "code":
            code = self.codes[f.name]
            folded = code.folded.get(_fold(value))
            other = Release.R1 if self.release is Release.R2 else Release.R2
            same: str | None = None
            m = code.other_exact.get(value) or code.other_folded.get(_fold(value))
            if m is not None:
                same = next((v for v, (key, _g) in code.exact.items() if key == m[0]), None)
            return fixes.code_fix(
                f,
                value,
                rule,
                release_label=self.release_label,
                release_id=self.release.value,
                defined=code.exact,
                folded_match=folded[2] if folded else None,
                other_release_label=self.spec.releases[other].label,
                same_meaning=same,
            )
        if fmt == "date":
            return fixes.date_fix(f, value, rule)
        if fmt == "nhs_number":
            return fixes.nhs_fix(value, rule)
        if fmt == "postcode":
            return fixes.postcode_fix(value)
        if fmt in ("decimal_2dp", "integer"):
            return fixes.number_fix(f, value, rule)
        if fmt == "la_code":
            return fixes.la_code_fix(value)
        if fmt == "ods_gp_practice_code":
            return fixes.ods_fix(value)
        if fmt == "cqc_location_id":
            return fixes.cqc_fix(value)
        return fixes.NO_AUTOMATIC_FIX

    def _check_code(self, f: SpecField, value: str, result: RowResult) -> tuple[Validity, str | None, str]:
        code = self.codes[f.name]
        if value in code.exact:
            return Validity.VALID, None, ""
        rel = self.release_label
        if self.release is Release.R2 and (
            value in code.other_key_in_mine or (code.enforced and value in code.other_exact)
        ):
            return Validity.RELEASE_1, "CLD003", f"{f.header} holds a Release 1 value in a Release 2 file."
        if code.enforced:
            folded = code.folded.get(_fold(value))
            if folded is not None:
                return (
                    Validity.INVALID,
                    "CLD004",
                    f"{f.header} differs only in capitalisation or spacing from the defined value "
                    f"'{folded[2]}' ({rel}).",
                )
            hint = ""
            if value in code.other_exact and self.release is Release.R1:
                hint = " It is a Release 2 value: is this a Release 2 file?"
            return (
                Validity.INVALID,
                "CLD002",
                f"{f.header} is not in the {rel} defined list ({code.label}).{hint}",
            )
        result.unchecked.append(f.name)
        return Validity.VALID, None, ""

    def _cross_field(self, rec: Mapping[str, str | None], facts: _Facts, result: RowResult) -> None:
        idx = self._index

        def fail(name: str, rule: str, message: str) -> None:
            i = idx[name]
            if result.validities[i].failed:
                return  # one failure per field: the field's own check already speaks for it
            result.validities[i] = Validity.INVALID
            result.findings.append(
                FieldFinding(
                    name,
                    self.fields[i].header,
                    result.statuses[i],
                    Validity.INVALID,
                    rule,
                    message,
                    fixes.cross_field_fix(rule),
                )
            )

        client = facts.meaning("client_type")
        client_key = client[0] if client else None
        if client_key == "service_user":
            for name in self._carer_fields:
                if rec.get(name):
                    fail(name, "XF005", f"{self.fields[idx[name]].header} is a carer field on a service user row.")
        elif client_key == "carer_known_by_association":
            for name in self._ckba_event_fields:
                if rec.get(name):
                    fail(
                        name,
                        "XF006",
                        f"{self.fields[idx[name]].header} is an event field on a 'Carer known by association' row.",
                    )

        d = self._date_or_none
        rp_start = d(rec.get("reporting_period_start_date") or "")
        rp_end = d(rec.get("reporting_period_end_date") or "")
        if rp_start and rp_end and rp_end < rp_start:
            fail("reporting_period_end_date", "XF003", "Reporting Period End Date is before its start date.")
        dob = d(rec.get("date_of_birth") or "")
        dod = d(rec.get("date_of_death") or "")
        if dob and dod and dod < dob:
            fail("date_of_death", "XF002", "Date of Death is before Date of Birth.")
        if client_key == "carer_known_by_association":
            return
        start = d(rec.get("event_start_date") or "")
        end = d(rec.get("event_end_date") or "")
        if start and end and end < start:
            fail("event_end_date", "XF001", "Event End Date is before Event Start Date.")
            return
        if start and dod and start > dod:
            fail("event_start_date", "XF007", "Event Start Date is after Date of Death.")
        event = facts.meaning("event_type")
        if not (event and rp_start and rp_end and start) or rp_end < rp_start:
            return
        # R-SCOPE-1 / R-FIL-1 / R-FIL-2: what belongs in the reporting period.
        if event[0] == "service":
            if start > rp_end:
                fail("event_start_date", "XF004", "Service starts after the reporting period ends.")
            elif end is not None and end < rp_start:
                fail("event_end_date", "XF004", "Service ended before the reporting period starts.")
        elif end is not None and not (rp_start <= end <= rp_end):
            fail(
                "event_end_date",
                "XF004",
                "Requests, assessments and reviews must be completed within the reporting period.",
            )


def _status(cf: _CompiledField, facts: _Facts) -> tuple[FieldStatus, StatusCase | None]:
    for case, cond in cf.cases:
        if cond is None:
            return case.status, case
        r = cond(facts)
        if r is True:
            return case.status, case
        if r is None:
            return FieldStatus.UNDETERMINED, None
    return FieldStatus.UNDETERMINED, None


def nhs_check_digit_ok(digits: str) -> bool:
    """Modulus 11 (weights 10..2; 11 -> 0; 10 is never valid)."""
    total = sum(int(c) * w for c, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


_VALIDATORS: dict[tuple[int, Release], tuple[Spec, Validator]] = {}


def validator_for(release: Release, spec: Spec | None = None) -> Validator:
    """A shared validator for the shipped spec (or a given one) and a release (cached per spec object)."""
    spec = spec or load_spec()
    hit = _VALIDATORS.get((id(spec), release))
    if hit is None or hit[0] is not spec:
        hit = (spec, Validator(spec, release))
        _VALIDATORS[(id(spec), release)] = hit
    return hit[1]


def validate_record(record: Mapping[str, str | None], *, release: Release, spec: Spec | None = None) -> RowResult:
    """Validate one record (fields by snake_case name; dates dd/mm/yyyy)."""
    return validator_for(release, spec).validate(record)
