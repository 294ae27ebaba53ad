"""The CLD specification compiled once into a columnar engine (issue 11 item 1): a batch of rows is a polars frame.

``compile_plan(spec, release, absent)`` turns the spec data (status cases, code lists per release and their
completeness, formats, the rule catalogue) into polars expressions, once per (spec, release, absent columns).
``validate_frame(frame, plan)`` evaluates them over a frame of string cells (one column per spec field name,
null = blank, values already stripped as ``cld_schemas.csvfile`` strips them) and returns the findings as a frame
(row, field, header, status, validity, rule, message) plus the unchecked counts per field. A single record is a
one-row frame.

The behaviour is that of ``rules.Validator`` (the reference), finding for finding and message for message; the
golden corpus (tests/golden) and a differential property test hold it so. No per-row Python: formats, dates,
NHS check digits, statuses and cross-field rules are expressions. Code values are judged once per *distinct*
value (case folding and whitespace collapsing must be Python's ``str.casefold``/``str.split`` exactly), cached
per plan, and the verdicts are mapped back onto the column.

``validate_stream_columnar`` reads an LA file with ``csvfile``'s strict parser (polars' CSV reader cannot match
its rules: a record over two physical lines is an error with a line number, Python's ``str.strip`` whitespace,
ragged-row counting) and validates it in frames of ``batch_size`` rows, so memory stays flat.

Messages never contain a value from the row; they may quote the specification's own code values.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import polars as pl

from cld_schemas.contract import LA_CODE_PATTERN
from cld_schemas.csvfile import CLDRows
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
from cld_validation.findings import CARER_FIELDS, EVENT_GROUPS, MAX_TEXT_LENGTH, FieldFinding

DEFAULT_BATCH_ROWS: Final = 50_000

FINDINGS_SCHEMA: Final = {
    "row": pl.Int64,
    "field": pl.String,
    "header": pl.String,
    "status": pl.String,
    "validity": pl.String,
    "rule": pl.String,
    "message": pl.String,
    "case": pl.Int16,
    "value": pl.String,
}
"""The findings frame: ``row`` is the 0-based index of the row in the frame (the file reader adds the offset);
``case`` the index of the field's deciding status case (-1: Undetermined); ``value`` the cell (null: blank), for
the fix only (never a message)."""

# Python's re with re.ASCII, as Rust regex: [0-9] for \d; (?i-u) so case-insensitivity stays ASCII.
_DATE_RX: Final = r"^[0-9]{2}/[0-9]{2}/[0-9]{4}$"
_NHS_RX: Final = r"^[0-9]{10}$"
_POSTCODE_RX: Final = r"^(?i-u:GIR ?0AA|[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2})$"
_DECIMAL_RX: Final = r"^-?[0-9]{1,16}(\.[0-9]{1,2})?$"
_DECIMAL_ANY_RX: Final = r"^-?[0-9]+(\.[0-9]+)?$"
_INTEGER_RX: Final = r"^[0-9]{1,6}$"
_LA_CODE_RX: Final = LA_CODE_PATTERN  # the contract's (CLD050)
_ODS_RX: Final = r"^[A-Z][0-9]{5}$"
_CQC_RX: Final = r"^1-[0-9]{1,12}$"

_UNDETERMINED: Final = -1
_VERDICT_CACHE_MAX: Final = 200_000


def _fold(value: str) -> str:
    return " ".join(value.casefold().split())


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What one distinct value of a coded field means and how it fares (the reference's ``_Code``)."""

    key: str | None
    group: str | None
    rule: str | None
    message: str | None
    unchecked: bool


class _CodeJudge:
    """A coded field's lists for one release, judging distinct values (cached: code values repeat)."""

    def __init__(self, f: SpecField, release: Release, release_label: str) -> None:
        other_release = Release.R1 if release is Release.R2 else Release.R2
        mine: CodeList | None = f.code_list(release)
        other: CodeList | None = f.code_list(other_release)
        self.header = f.header
        self.release = release
        self.release_label = release_label
        completeness = mine.completeness if mine else Completeness.UNKNOWN
        self.enforced = completeness.enforced
        values = mine.values if mine else ()
        self.exact = {v.value: (v.key, v.group) for v in values}
        self.folded = {_fold(v.value): (v.key, v.group, v.value) for v in values}
        other_values = other.values if other else ()
        self.other_exact = {v.value: (v.key, v.group) for v in other_values if v.value not in self.exact}
        self.other_folded = {_fold(v.value): (v.key, v.group) for v in other_values}
        keys_in_mine = {v.key for v in values}
        self.other_key_in_mine = {v.value for v in other_values if v.key in keys_in_mine and v.value not in self.exact}
        self.label = f"{len(values)} values, list {completeness.value}"
        self._cache: dict[str, _Verdict] = {}

    def judge(self, value: str) -> _Verdict:
        hit = self._cache.get(value)
        if hit is None:
            hit = self._judge(value)
            if len(self._cache) > _VERDICT_CACHE_MAX:
                self._cache.clear()
            self._cache[value] = hit
        return hit

    def _meaning(self, value: str) -> tuple[str, str | None] | None:
        hit = self.exact.get(value)
        if hit is not None:
            return hit
        f = _fold(value)
        hit3 = self.folded.get(f)
        if hit3 is not None:
            return hit3[0], hit3[1]
        return self.other_exact.get(value) or self.other_folded.get(f)

    def _judge(self, value: str) -> _Verdict:
        m = self._meaning(value)
        key, group = (m[0], m[1]) if m is not None else (None, None)
        if value in self.exact:
            return _Verdict(key, group, None, None, False)
        if len(value) > MAX_TEXT_LENGTH:
            return _Verdict(key, group, "CLD053", f"{self.header} is longer than {MAX_TEXT_LENGTH} characters.", False)
        if self.release is Release.R2 and (
            value in self.other_key_in_mine or (self.enforced and value in self.other_exact)
        ):
            return _Verdict(key, group, "CLD003", f"{self.header} holds a Release 1 value in a Release 2 file.", False)
        if self.enforced:
            folded = self.folded.get(_fold(value))
            if folded is not None:
                return _Verdict(
                    key,
                    group,
                    "CLD004",
                    f"{self.header} differs only in capitalisation or spacing from the defined value "
                    f"'{folded[2]}' ({self.release_label}).",
                    False,
                )
            hint = ""
            if value in self.other_exact and self.release is Release.R1:
                hint = " It is a Release 2 value: is this a Release 2 file?"
            return _Verdict(
                key,
                group,
                "CLD002",
                f"{self.header} is not in the {self.release_label} defined list ({self.label}).{hint}",
                False,
            )
        return _Verdict(key, group, None, None, True)


# ---- column names of the working frame (prefixes keep them apart from the spec's field names) ----
def _key(name: str) -> str:
    return f"__key__{name}"


def _grp(name: str) -> str:
    return f"__grp__{name}"


def _vcode(name: str) -> str:
    return f"__vcode__{name}"


def _date(name: str) -> str:
    return f"__date__{name}"


def _own(name: str) -> str:
    return f"__own__{name}"


def _case(name: str) -> str:
    return f"__case__{name}"


def _unchk(name: str) -> str:
    return f"__unchk__{name}"


def _slot_col(order: int) -> str:
    return f"__slot{order:03d}"


_DATE_FIELDS_USED: Final = (
    "reporting_period_start_date",
    "reporting_period_end_date",
    "date_of_birth",
    "date_of_death",
    "event_start_date",
    "event_end_date",
)
_BLANK_CODE: Final = 1_000_000
"""Finding codes: 1..n a value-check outcome (for coded fields, 1 + the distinct value's index in the batch);
_BLANK_CODE + i blank but Mandatory by status case i; cross-field slots use 1."""
_CASE_BITS: Final = 64
"""A slot's packed value is code * 64 + (status case index + 1): one integer column per slot to unpivot."""


def _date_key(v: pl.Expr) -> pl.Expr:
    """yyyymmdd as an integer for a real calendar date written dd/mm/yyyy (years 1..9999, as Python's date), else
    null. Ordering these integers orders the dates. The calendar is chrono's (``str.to_date``) on values already of
    the exact shape; year 0, which chrono knows and Python's date does not, is refused."""
    shaped = v.str.contains(_DATE_RX)
    d = v.str.slice(0, 2).cast(pl.Int32, strict=False)
    m = v.str.slice(3, 2).cast(pl.Int32, strict=False)
    y = v.str.slice(6, 4).cast(pl.Int32, strict=False)
    real = shaped & (y >= 1) & v.str.to_date("%d/%m/%Y", strict=False).is_not_null()
    return pl.when(real).then(y * 10000 + m * 100 + d).otherwise(None)


def _first_code(conds: list[tuple[pl.Expr, int]]) -> pl.Expr:
    """The code of the first condition that holds (null when none does): small integers, no strings per row."""
    chain: Any = pl
    for cond, code in conds:
        chain = chain.when(cond).then(pl.lit(code, pl.Int32))
    if chain is pl:
        return pl.lit(None, pl.Int32)
    return chain.otherwise(pl.lit(None, pl.Int32))  # type: ignore[no-any-return]


def _nhs_ok(v: pl.Expr) -> pl.Expr:
    """Modulus 11 (weights 10..2; 11 -> 0; 10 is never valid), for values already 10 ASCII digits."""
    digits = [v.str.slice(i, 1).cast(pl.Int32, strict=False) for i in range(10)]
    total = sum((digits[i] * (10 - i) for i in range(9)), pl.lit(0, pl.Int32))
    check = 11 - total % 11
    check = pl.when(check == 11).then(0).otherwise(check)
    return (check != 10) & (check == digits[9])


def _value_check(f: SpecField, date_col: str | None) -> tuple[pl.Expr, list[tuple[str, str]], pl.Expr | None]:
    """A non-coded field's value on its own: (code expression, [(rule, message)] for codes 1..n, unchecked)."""
    v = pl.col(f.name)
    h = f.header
    long = v.str.len_chars() > MAX_TEXT_LENGTH
    pairs: list[tuple[pl.Expr, str, str]] = [(long, "CLD053", f"{h} is longer than {MAX_TEXT_LENGTH} characters.")]
    unchecked: pl.Expr | None = None
    fmt = f.format
    if fmt == "date":
        real = pl.col(date_col) if date_col else _date_key(v)
        pairs += [
            (~v.str.contains(_DATE_RX), "CLD010", f"{h} is not written dd/mm/yyyy."),
            (real.is_null(), "CLD011", f"{h} is not a real calendar date."),
        ]
    elif fmt == "nhs_number":
        pairs += [
            (~v.str.contains(_NHS_RX), "CLD020", "NHS Number is not 10 digits (no spaces or other characters)."),
            (~_nhs_ok(v), "CLD021", "NHS Number fails the Modulus 11 check digit."),
        ]
    elif fmt == "postcode":
        pairs.append((~v.str.contains(_POSTCODE_RX), "CLD030", "Postcode does not have the shape of a UK postcode."))
    elif fmt == "decimal_2dp":
        ok = v.str.contains(_DECIMAL_RX)
        numeric = v.str.contains(_DECIMAL_ANY_RX)
        pairs += [
            (~ok & numeric & v.str.contains(r"\.[0-9]{3}"), "CLD040", f"{h} has more than two decimal places."),
            (~ok & numeric, "CLD040", f"{h} has more than 16 digits before the decimal point."),
            (~ok, "CLD040", f"{h} is not a number with up to two decimal places."),
        ]
    elif fmt == "integer":
        pairs.append((~v.str.contains(_INTEGER_RX), "CLD041", f"{h} is not a whole number of 0 or more."))
    elif fmt == "la_code":
        pairs.append((~v.str.contains(_LA_CODE_RX), "CLD050", "LA Code is not a 3-digit number."))
    elif fmt == "ods_gp_practice_code":
        pairs.append(
            (~v.str.contains(_ODS_RX), "CLD051", "GP Practice Code is not one letter and five digits (ODS code).")
        )
    elif fmt == "cqc_location_id":
        msg = "Provider CQC Location ID does not look like '1-' followed by digits."
        pairs.append((~v.str.contains(_CQC_RX), "CLD052", msg))
    elif fmt == "unknown":
        unchecked = v.is_not_null() & ~long
    elif fmt not in ("text", "identifier"):
        raise ValueError(f"no check for format {fmt!r} of field {f.name!r}")
    present = v.is_not_null()
    code = _first_code([(present & c, i) for i, (c, _r, _m) in enumerate(pairs, start=1)])
    return code, [(r, m) for _c, r, m in pairs], unchecked


def _condition(when: Mapping[str, Any], coded: set[str], used: set[str]) -> pl.Expr:
    """A status case's ``when`` as a Kleene-logic boolean expression: null is 'unknown' (the reference's None)."""
    parts: list[pl.Expr] = []
    for k, arg in when.items():
        if k == "all":
            parts.append(_kleene(pl.Expr.and_, [_condition(c, coded, used) for c in arg]))
        elif k == "any":
            parts.append(_kleene(pl.Expr.or_, [_condition(c, coded, used) for c in arg]))
        elif k == "not":
            parts.append(~_condition(arg, coded, used))
        elif k == "present":
            parts.append(pl.col(arg).is_not_null())
        elif k == "age_at_period_end":
            parts.append(pl.col("__age__").is_between(int(arg[0]), int(arg[1])))
        elif k.endswith("_group") and k.removesuffix("_group") in coded:
            name = k.removesuffix("_group")
            used.add(name)
            member = pl.col(_grp(name)).is_in(list(arg)).fill_null(False)
            parts.append(pl.when(pl.col(_key(name)).is_null()).then(pl.lit(None, pl.Boolean)).otherwise(member))
        elif k in coded:
            used.add(k)
            parts.append(pl.col(_key(k)).is_in(list(arg)))
        else:
            raise ValueError(f"status condition names an unknown or uncoded field: {k!r}")
    return parts[0] if len(parts) == 1 else _kleene(pl.Expr.and_, parts)


def _kleene(op: Callable[[pl.Expr, pl.Expr], pl.Expr], subs: list[pl.Expr]) -> pl.Expr:
    """polars' & and | on nullable booleans are Kleene's, as the reference's tri-state all/any."""
    acc = subs[0]
    for s in subs[1:]:
        acc = op(acc, s)
    return acc


def _case_index(cases: tuple[StatusCase, ...], coded: set[str], used: set[str]) -> pl.Expr:
    """Index of the deciding status case, or -1 (Undetermined): first case that holds; unknown stops the search."""
    chain: Any = pl
    for i, c in enumerate(cases):
        if c.when is None:
            if chain is pl:
                return pl.lit(i, pl.Int16)
            return chain.otherwise(pl.lit(i, pl.Int16)).cast(pl.Int16)  # type: ignore[no-any-return]
        cond = _condition(c.when, coded, used)
        chain = chain.when(cond.fill_null(False)).then(pl.lit(i, pl.Int16))
        chain = chain.when(cond.is_null()).then(pl.lit(_UNDETERMINED, pl.Int16))
    if chain is pl:
        return pl.lit(_UNDETERMINED, pl.Int16)
    return chain.otherwise(pl.lit(_UNDETERMINED, pl.Int16)).cast(pl.Int16)  # type: ignore[no-any-return]


@dataclass(slots=True)
class Plan:
    """The spec compiled for one release and one set of absent columns. Build with :func:`compile_plan`."""

    spec: Spec
    release: Release
    absent: frozenset[str]
    names: tuple[str, ...]
    judges: dict[str, _CodeJudge]
    meaning_fields: frozenset[str]
    """Coded fields whose meaning (key, group) status or cross-field rules read."""
    stages: list[list[pl.Expr]]
    slot_columns: list[str]
    slot_meta: pl.DataFrame
    """Per slot: order, field name and header."""
    static_outcomes: pl.DataFrame
    """(slot, code) -> rule, message, validity for every code known at compile time."""
    statuses: pl.DataFrame
    """(slot, case) -> status."""
    unchecked: dict[str, pl.Expr]
    coded_slots: dict[str, int] = field(default_factory=dict)
    by_name: dict[str, SpecField] = field(default_factory=dict)
    case_columns: dict[str, str] = field(default_factory=dict)
    schema: dict[str, type[pl.DataType]] = field(default_factory=dict)
    """One String column per spec field name: the frame a batch of records is read into."""
    """Field name -> the column holding its deciding status case (shared by fields with the same conditions)."""
    fix_cache: dict[tuple[str, str, str, str | None, int, str | None], str] = field(default_factory=dict)
    """Fixes already worded (cells fail the same way many times)."""


def compile_plan(spec: Spec, release: Release, *, absent: frozenset[str] = frozenset()) -> Plan:
    """Compile ``spec`` for ``release``. ``absent``: field names that are not columns of the file at hand
    (their blanks are not reported per row), as for ``rules.Validator``."""
    fields = tuple(sorted(spec.fields, key=lambda f: f.order))
    names = tuple(f.name for f in fields)
    label = spec.releases[release].label
    judges = {f.name: _CodeJudge(f, release, label) for f in fields if f.format == "code"}
    coded = set(judges)
    used: set[str] = {"client_type", "event_type"} & coded

    dates = [n for n in _DATE_FIELDS_USED if n in names]
    stage_dates = [_date_key(pl.col(n)).alias(_date(n)) for n in dates]
    end, dob = _date_key(pl.col("reporting_period_end_date")), _date_key(pl.col("date_of_birth"))
    stage_dates.append(
        ((end // 10000) - (dob // 10000) - ((end % 10000) < (dob % 10000)).cast(pl.Int32)).alias("__age__")
    )

    outcomes: list[tuple[int, int, str, str, str]] = []  # slot, code, rule, message, validity
    status_rows: list[tuple[int, int, str]] = []
    unchecked: dict[str, pl.Expr] = {}
    stage_values: list[pl.Expr] = []
    stage_cases: list[pl.Expr] = []
    stage_own: list[pl.Expr] = []
    coded_slots: dict[str, int] = {}
    case_cols: dict[str, str] = {}
    shared: dict[str, str] = {}  # fields whose status cases read the same conditions share one case column
    for f in fields:
        signature = json.dumps([c.when for c in f.status], sort_keys=True, default=str)
        first = shared.get(signature)
        if first is None:
            first = shared[signature] = _case(f.name)
            stage_cases.append(_case_index(f.status, coded, used).alias(first))
        case_cols[f.name] = first
    for order, f in enumerate(fields):
        case = pl.col(case_cols[f.name])
        status_rows += [(order, i, c.status.value) for i, c in enumerate(f.status)]
        status_rows.append((order, _UNDETERMINED, FieldStatus.UNDETERMINED.value))
        if f.format == "code":
            coded_slots[f.name] = order
            value_code: pl.Expr = pl.col(_vcode(f.name))
        else:
            code, pairs, unch = _value_check(f, _date(f.name) if f.name in dates else None)
            stage_values.append(code.alias(_vcode(f.name)))
            value_code = pl.col(_vcode(f.name))
            outcomes += [(order, i, r, m, Validity.INVALID.value) for i, (r, m) in enumerate(pairs, start=1)]
            if unch is not None:
                unchecked[f.name] = unch
        blank_conds: list[tuple[pl.Expr, int]] = []
        if f.name not in absent:
            blank = pl.col(f.name).is_null()
            for i, c in enumerate(f.status):
                if c.status is FieldStatus.MANDATORY:
                    blank_conds.append((blank & (case == i), _BLANK_CODE + i))
                    message = f"{f.header} is blank but Mandatory here: {c.why} ({c.cites})."
                    outcomes.append((order, _BLANK_CODE + i, c.id, message, Validity.BLANK_MANDATORY.value))
        own = pl.coalesce(value_code, _first_code(blank_conds)) if blank_conds else value_code
        stage_own.append(own.alias(_own(f.name)))

    slot_exprs: list[pl.Expr] = []
    meta: list[tuple[int, str, str]] = []
    for order, f in enumerate(fields):
        packed = pl.col(_own(f.name)).cast(pl.Int64) * _CASE_BITS + (pl.col(case_cols[f.name]) + 1)
        slot_exprs.append(packed.alias(_slot_col(order)))
        meta.append((order, f.name, f.header))
    for order, (name, rule, cond, message) in enumerate(_cross_field_rules(fields, names), start=len(fields)):
        i = names.index(name)
        packed = pl.when(cond.fill_null(False)).then(_CASE_BITS + pl.col(case_cols[name]).cast(pl.Int64) + 1)
        slot_exprs.append(packed.otherwise(None).alias(_slot_col(order)))
        meta.append((order, name, fields[i].header))
        outcomes.append((order, 1, rule, message, Validity.INVALID.value))
        status_rows += [(order, j, c.status.value) for j, c in enumerate(fields[i].status)]
        status_rows.append((order, _UNDETERMINED, FieldStatus.UNDETERMINED.value))

    stage_meanings_used = frozenset(used)
    return Plan(
        spec=spec,
        release=release,
        absent=absent,
        names=names,
        judges=judges,
        meaning_fields=stage_meanings_used,
        stages=[stage_dates, stage_values + stage_cases, stage_own, slot_exprs],
        slot_columns=[_slot_col(o) for o, _n, _h in meta],
        slot_meta=pl.DataFrame(meta, schema={"slot": pl.Int32, "field": pl.String, "header": pl.String}, orient="row"),
        static_outcomes=_outcome_frame(outcomes),
        statuses=pl.DataFrame(
            status_rows, schema={"slot": pl.Int32, "case": pl.Int16, "status": pl.String}, orient="row"
        ),
        unchecked=unchecked,
        coded_slots=coded_slots,
        by_name={f.name: f for f in fields},
        case_columns=case_cols,
        schema=dict.fromkeys(names, pl.String),
    )


_OUTCOME_SCHEMA: Final = {
    "slot": pl.Int32,
    "code": pl.Int64,
    "rule": pl.String,
    "message": pl.String,
    "validity": pl.String,
}


def _outcome_frame(rows: list[tuple[int, int, str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=_OUTCOME_SCHEMA, orient="row")


def _cross_field_rules(fields: tuple[SpecField, ...], names: tuple[str, ...]) -> list[tuple[str, str, pl.Expr, str]]:
    """(field, rule, condition, message) in the reference's ``_cross_field`` order: XF005/XF006 (spec order), XF003,
    XF002, XF001, XF007, XF004 (start; end). A field whose own check failed gets no cross-field finding."""
    client = pl.col(_key("client_type"))
    event = pl.col(_key("event_type"))
    out: list[tuple[str, str, pl.Expr, str]] = []

    def own_ok(name: str) -> pl.Expr:
        return pl.col(_own(name)).is_null()

    for f in fields:
        if f.name in CARER_FIELDS:
            cond = (client == "service_user") & pl.col(f.name).is_not_null() & own_ok(f.name)
            out.append((f.name, "XF005", cond, f"{f.header} is a carer field on a service user row."))
    for f in fields:
        if f.group in EVENT_GROUPS:
            cond = (client == "carer_known_by_association") & pl.col(f.name).is_not_null() & own_ok(f.name)
            out.append((f.name, "XF006", cond, f"{f.header} is an event field on a 'Carer known by association' row."))
    if not all(n in names for n in _DATE_FIELDS_USED):
        return out
    rp_start = pl.col(_date("reporting_period_start_date"))
    rp_end = pl.col(_date("reporting_period_end_date"))
    dob = pl.col(_date("date_of_birth"))
    dod = pl.col(_date("date_of_death"))
    start = pl.col(_date("event_start_date"))
    end = pl.col(_date("event_end_date"))
    not_ckba = client.is_null() | (client != "carer_known_by_association")
    xf001 = (not_ckba & (end < start)).fill_null(False)
    go_on = not_ckba & ~xf001
    xf007 = (go_on & (start > dod)).fill_null(False)
    scoped = go_on & event.is_not_null() & rp_start.is_not_null() & rp_end.is_not_null() & start.is_not_null()
    scoped = (scoped & (rp_end >= rp_start)).fill_null(False)
    service = event == "service"
    out += [
        (
            "reporting_period_end_date",
            "XF003",
            rp_end < rp_start,
            "Reporting Period End Date is before its start date.",
        ),
        ("date_of_death", "XF002", dod < dob, "Date of Death is before Date of Birth."),
        ("event_end_date", "XF001", xf001, "Event End Date is before Event Start Date."),
        ("event_start_date", "XF007", xf007, "Event Start Date is after Date of Death."),
        (
            "event_start_date",
            "XF004",
            scoped & service & (start > rp_end) & ~xf007,
            "Service starts after the reporting period ends.",
        ),
        (
            "event_end_date",
            "XF004",
            scoped & service & ~(start > rp_end) & end.is_not_null() & (end < rp_start),
            "Service ended before the reporting period starts.",
        ),
        (
            "event_end_date",
            "XF004",
            scoped & ~service & end.is_not_null() & ~end.is_between(rp_start, rp_end),
            "Requests, assessments and reviews must be completed within the reporting period.",
        ),
    ]
    return out


_PLANS: dict[tuple[int, Release, frozenset[str]], Plan] = {}


def plan_for(spec: Spec, release: Release, *, absent: frozenset[str] = frozenset()) -> Plan:
    """A shared plan per (spec object, release, absent columns): compiled once."""
    key = (id(spec), release, absent)
    hit = _PLANS.get(key)
    if hit is None or hit.spec is not spec:
        if len(_PLANS) > 64:
            _PLANS.clear()
        hit = compile_plan(spec, release, absent=absent)
        _PLANS[key] = hit
    return hit


@dataclass(frozen=True, slots=True)
class FrameResult:
    findings: pl.DataFrame
    """One row per finding, in the reference's order (by row, then within a row as ``Validator.validate``)."""
    unchecked: dict[str, int]
    """Field name -> number of rows whose non-blank value could not be checked against a complete code list."""
    rows: int
    frame: pl.DataFrame | None = None
    """With ``detail``: the prepared frame (one String column per spec field, blank = null, la_code filled)."""
    detail: pl.DataFrame | None = None
    """With ``detail``: per row, each field's deciding status case (``__case__<name>``, Int16, -1 Undetermined),
    whether its value was unchecked (``__unchk__<name>``, for fields that can be), and the Event Start Date as a
    yyyymmdd integer (``__date__event_start_date``, null when not a real date)."""


def _coded_columns(
    frame: pl.DataFrame, plan: Plan
) -> tuple[list[pl.Expr], list[pl.Expr], list[tuple[int, int, str, str, str]]]:
    """Per coded field, judged once per distinct value of the batch (one pass finds them all): expressions for
    the finding code column (1 + the value's index among the distinct values, when it fails) and the meaning
    (key, group) where rules read it; expressions counting unchecked values; and the batch's
    (slot, code) -> rule, message, validity rows."""
    names = list(plan.judges)
    distinct_lists = frame.select(pl.col(n).drop_nulls().unique().implode() for n in names).row(0)
    columns: list[pl.Expr] = []
    counts: list[pl.Expr] = []
    outcomes: list[tuple[int, int, str, str, str]] = []
    for name, distinct in zip(names, distinct_lists, strict=True):
        judge = plan.judges[name]
        slot = plan.coded_slots[name]
        failing: list[str] = []
        codes: list[int] = []
        unchecked: list[str] = []
        for i, value in enumerate(distinct):
            v = judge.judge(value)
            if v.rule is not None and v.message is not None:
                failing.append(value)
                codes.append(i + 1)
                validity = Validity.RELEASE_1 if v.rule == "CLD003" else Validity.INVALID
                outcomes.append((slot, i + 1, v.rule, v.message, validity.value))
            elif v.unchecked:
                unchecked.append(value)
        col = pl.col(name)
        columns.append(_lookup(col, failing, codes, pl.Int32).alias(_vcode(name)))
        if unchecked:
            counts.append(col.is_in(unchecked).alias(_unchk(name)))
        if name in plan.meaning_fields:
            verdicts = [(value, judge.judge(value)) for value in distinct]
            known = [(value, v) for value, v in verdicts if v.key is not None]
            columns.append(_lookup(col, [x for x, _ in known], [v.key for _, v in known], pl.String).alias(_key(name)))
            grouped = [(value, v) for value, v in known if v.group is not None]
            columns.append(
                _lookup(col, [x for x, _ in grouped], [v.group for _, v in grouped], pl.String).alias(_grp(name))
            )
    return columns, counts, outcomes


def _lookup(col: pl.Expr, old: list[str], new: list[Any], dtype: type[pl.DataType]) -> pl.Expr:
    if not old:
        return pl.lit(None, dtype)
    return col.replace_strict(old, new, default=None, return_dtype=dtype)


def prepare(frame: pl.DataFrame, plan: Plan, *, la_code: str | None = None) -> pl.DataFrame:
    """The frame with one String column per spec field (missing ones null, blank strings null) and la_code filled
    where blank."""
    exprs: list[pl.Expr] = []
    for n in plan.names:
        e = pl.col(n).cast(pl.String) if n in frame.columns else pl.lit(None, pl.String)
        if n == "la_code" and la_code is not None:
            e = e.fill_null(pl.lit(la_code))
        exprs.append(pl.when(e == "").then(pl.lit(None, pl.String)).otherwise(e).alias(n))
    return frame.select(exprs)


def validate_frame(frame: pl.DataFrame, plan: Plan, *, la_code: str | None = None, detail: bool = False) -> FrameResult:
    """Validate every row of ``frame`` (string cells by spec field name, null or empty = blank, values stripped).

    ``la_code`` fills blank LA codes first (as ``cld validate --la``). ``detail``: also return the prepared frame
    and the per-row status cases and unchecked flags (what the DQ profile counts)."""
    df = prepare(frame, plan, la_code=la_code)
    n = df.height
    coded, flags, batch_outcomes = _coded_columns(df, plan)
    flags += [e.fill_null(False).alias(_unchk(name)) for name, e in plan.unchecked.items()]
    lf = df.lazy().with_columns(coded)
    for stage in plan.stages:
        lf = lf.with_columns(stage)
    slots = plan.slot_columns
    detail_frame: pl.DataFrame | None = None
    if detail:
        cases = [pl.col(plan.case_columns[name]).alias(_case(name)) for name in plan.names]
        start = [_date("event_start_date")] if "event_start_date" in plan.names else []
        full = lf.with_columns(flags).select(*slots, *cases, *start, *(e.meta.output_name() for e in flags)).collect()
        detail_frame = full.drop(slots)
        hits = full.select(slots).with_row_index("row").filter(pl.any_horizontal(pl.col(slots).is_not_null()))
        totals = detail_frame.select(pl.col(_unchk(name)).sum() for name in plan.names if _unchk(name) in full.columns)
    else:
        wide = lf.with_row_index("row").filter(pl.any_horizontal(pl.col(slots).is_not_null()))
        hits = wide.select("row", *slots).collect()
        totals = df.select(e.sum() for e in flags) if flags else pl.DataFrame()  # raw columns only
    unchecked: dict[str, int] = {}
    for col_name, total in (totals.row(0, named=True) if totals.width else {}).items():
        if total:
            unchecked[col_name.removeprefix("__unchk__")] = int(total)
    unchecked = {k: unchecked[k] for k in plan.names if k in unchecked}
    if hits.height == 0:
        empty = pl.DataFrame(schema=FINDINGS_SCHEMA)
        return FrameResult(empty, unchecked, n, df if detail else None, detail_frame)
    outcomes = (
        pl.concat([plan.static_outcomes, _outcome_frame(batch_outcomes)]) if batch_outcomes else plan.static_outcomes
    )
    long = (
        hits.unpivot(index="row", on=slots, variable_name="col", value_name="packed")
        .drop_nulls("packed")
        .with_columns(
            pl.col("col").str.slice(6).cast(pl.Int32).alias("slot"),
            (pl.col("packed") // _CASE_BITS).alias("code"),
            ((pl.col("packed") % _CASE_BITS) - 1).cast(pl.Int16).alias("case"),
        )
        .join(outcomes, on=["slot", "code"], how="left")
        .join(plan.statuses, on=["slot", "case"], how="left")
        .join(plan.slot_meta, on="slot", how="left")
        .sort(["row", "slot"])
        .select(pl.col("row").cast(pl.Int64), "field", "header", "status", "validity", "rule", "message", "case")
    )
    return FrameResult(_with_values(long, df), unchecked, n, df if detail else None, detail_frame)


def _with_values(long: pl.DataFrame, df: pl.DataFrame) -> pl.DataFrame:
    """The findings with each failed cell's value (for the fix), gathered per field from the failing rows only."""
    used = long.get_column("field").unique().to_list()
    cells = (
        df.select(used)
        .with_row_index("row")
        .join(long.select(pl.col("row").cast(pl.UInt32)).unique(), on="row", how="semi")
        .unpivot(index="row", on=used, variable_name="field", value_name="value")
        .with_columns(pl.col("row").cast(pl.Int64))
    )
    return long.join(cells, on=["row", "field"], how="left", maintain_order="left")


# ---- files ----


@dataclass
class ColumnarSummary:
    """The counts ``report.FileSummary`` keeps, accumulated batch by batch."""

    release: Release
    rows: int = 0
    rows_with_failures: int = 0
    failures: int = 0
    by_field_rule: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    unchecked: Counter[str] = field(default_factory=Counter)
    missing_columns: tuple[str, ...] = ()
    unknown_columns: tuple[str, ...] = ()
    short_rows: int = 0
    long_rows: int = 0
    ragged_lines: tuple[int, ...] = ()

    def add(self, result: FrameResult) -> None:
        f = result.findings
        self.rows += result.rows
        self.failures += f.height
        if f.height:
            self.rows_with_failures += f.get_column("row").n_unique()
            # In first-seen order, so most_common() breaks ties as the reference's Counter does.
            for header, rule, validity, count in (
                f.group_by(["header", "rule", "validity"], maintain_order=True).len().iter_rows()
            ):
                self.by_field_rule[(header, rule, validity)] += count
        self.unchecked.update(result.unchecked)


PY_WHITESPACE: Final = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""Every character Python's ``str.strip()`` removes (``str.isspace``): polars' own idea of whitespace differs
(\x1c-\x1f), so cells are stripped of exactly these, as ``csvfile`` strips them."""


def iter_frames(rows: CLDRows, names: tuple[str, ...], batch_size: int) -> Iterator[pl.DataFrame]:
    """Frames of up to ``batch_size`` rows from ``csvfile``'s strict row stream: one String column per spec field
    of the file (others are left to :func:`prepare`), cells stripped as ``csvfile`` strips them, blank = null.

    The cells are csvfile's, parsed by its rules; only the hand-over to polars is columnar: a cell never holds a
    NUL or a line break (csvfile refuses both), so a batch joined with NUL between cells and LF between rows is
    read back by polars' CSV reader, without quoting, into exactly those cells (no Python object per cell)."""
    positions = [(i, name) for i, name in enumerate(rows.columns) if name is not None and name in names]
    schema = [f"c{i}" for i in range(len(rows.columns))]
    lines: list[str] = []
    for cells in rows.cells():
        lines.append("\x00".join(cells))  # one object per row held, not one per cell
        if len(lines) >= batch_size:
            yield _frame_of(lines, schema, positions)
            lines = []
    if lines:
        yield _frame_of(lines, schema, positions)


def _frame_of(lines: list[str], schema: list[str], positions: list[tuple[int, str]]) -> pl.DataFrame:
    data = "\n".join(lines).encode("utf-8")
    raw = pl.read_csv(
        io.BytesIO(data),
        has_header=False,
        separator="\x00",
        quote_char=None,
        eol_char="\n",
        infer_schema=False,
        new_columns=schema,
        raise_if_empty=False,
    )
    return raw.select(
        pl.col(f"c{i}").str.strip_chars(PY_WHITESPACE).replace("", None).alias(name) for i, name in positions
    )


FindingsSink = Callable[[pl.DataFrame], None]


def validate_stream_columnar(
    stream: TextIO,
    *,
    release: Release,
    spec: Spec | None = None,
    la_code: str | None = None,
    sink: FindingsSink | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
) -> ColumnarSummary:
    """Validate an LA file in frames of ``batch_size`` rows. ``sink`` gets each batch's findings frame, with
    ``row`` the 1-based data row of the file (as ``report.validate_stream``'s sink). Raises CLDFileError when the
    file cannot be used at all."""
    from cld_validation.report import open_file  # the same header checks as the reference

    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    spec = spec or load_spec()
    header, rows = open_file(stream, spec=spec, sparse=True)
    present = {c for c in header.columns if c is not None}
    absent = frozenset(f.name for f in spec.fields if f.name not in present and f.in_file is not True)
    if la_code is not None:
        absent = absent - {"la_code"}
    plan = plan_for(spec, release, absent=absent)
    summary = ColumnarSummary(
        release=release, missing_columns=header.missing_fields, unknown_columns=header.unknown_columns
    )
    for frame in iter_frames(rows, plan.names, batch_size):
        offset = summary.rows + 1
        result = validate_frame(frame, plan, la_code=la_code)
        summary.add(result)
        if sink is not None and result.findings.height:
            sink(result.findings.with_columns(pl.col("row") + offset))
    summary.short_rows, summary.long_rows = rows.short_rows, rows.long_rows
    summary.ragged_lines = tuple(rows.ragged_lines)
    return summary


# ---- fixes: per failed cell (never per row), cached per (field, rule, value, case, event type) ----


def event_label_in(plan: Plan, value: str | None) -> str | None:
    """The row's Event Type when it is exactly a defined value of the plan's release (so never personal)."""
    judge = plan.judges.get("event_type")
    return value if value and judge is not None and value in judge.exact else None


def finding_fix(
    plan: Plan, name: str, rule: str, validity: str, value: str | None, case: int, event: str | None
) -> str:
    """How to fix one finding, as the reference's ``Validator`` words it (``fixes``); ``event``: the row's Event
    Type when a defined value (:func:`event_label_in`)."""
    key = (name, rule, validity, value, case, event)
    hit = plan.fix_cache.get(key)
    if hit is None:
        hit = _finding_fix(plan, name, rule, validity, value, case, event)
        if len(plan.fix_cache) > _VERDICT_CACHE_MAX:
            plan.fix_cache.clear()
        plan.fix_cache[key] = hit
    return hit


def _finding_fix(
    plan: Plan, name: str, rule: str, validity: str, value: str | None, case: int, event: str | None
) -> str:
    from cld_validation import fixes

    f = plan.by_name[name]
    if validity == Validity.BLANK_MANDATORY.value:
        return fixes.blank_mandatory_fix(f, f.status[case], event_type=event)
    if rule.startswith("XF"):
        return fixes.cross_field_fix(rule)
    v = value or ""
    if rule == "CLD053":
        return fixes.too_long_fix(f, MAX_TEXT_LENGTH)
    fmt = f.format
    if fmt == "code":
        judge = plan.judges[name]
        folded = judge.folded.get(_fold(v))
        other = Release.R1 if plan.release is Release.R2 else Release.R2
        same: str | None = None
        m = judge.other_exact.get(v) or judge.other_folded.get(_fold(v))
        if m is not None:
            same = next((x for x, (k, _g) in judge.exact.items() if k == m[0]), None)
        return fixes.code_fix(
            f,
            v,
            rule,
            release_label=judge.release_label,
            release_id=plan.release.value,
            defined=judge.exact,
            folded_match=folded[2] if folded else None,
            other_release_label=plan.spec.releases[other].label,
            same_meaning=same,
        )
    if fmt == "date":
        return fixes.date_fix(f, v, rule)
    if fmt == "nhs_number":
        return fixes.nhs_fix(v, rule)
    if fmt == "postcode":
        return fixes.postcode_fix(v)
    if fmt in ("decimal_2dp", "integer"):
        return fixes.number_fix(f, v, rule)
    if fmt == "la_code":
        return fixes.la_code_fix(v)
    if fmt == "ods_gp_practice_code":
        return fixes.ods_fix(v)
    if fmt == "cqc_location_id":
        return fixes.cqc_fix(v)
    return fixes.NO_AUTOMATIC_FIX


def fixes_of(findings: pl.DataFrame, plan: Plan, events: pl.Series | None) -> list[str]:
    """The fix of each finding of a frame's findings, in order; ``events``: the frame's event_type column."""
    ev = events.to_list() if events is not None else None
    out: list[str] = []
    for row, name, rule, validity, value, case in findings.select(
        "row", "field", "rule", "validity", "value", "case"
    ).iter_rows():
        event = event_label_in(plan, ev[row]) if ev is not None else None
        out.append(finding_fix(plan, name, rule, validity, value, case, event))
    return out


# ---- records (the validation service): a Kafka batch is one frame per release; one record is a one-row batch ----


def validate_records(
    records: Sequence[Mapping[str, str | None]], releases: Sequence[Release], *, spec: Spec | None = None
) -> list[tuple[FieldFinding, ...]]:
    """The findings of each record (fields by snake_case name), in order, each checked against its release: one
    frame and one :func:`validate_frame` per release present, not a Python pass per record over the rules."""
    if len(records) != len(releases):
        raise ValueError("one release per record")
    spec = spec or load_spec()
    out: list[tuple[FieldFinding, ...]] = [()] * len(records)
    by_release: dict[Release, list[int]] = {}
    for i, rel in enumerate(releases):
        by_release.setdefault(rel, []).append(i)
    for rel, positions in by_release.items():
        plan = plan_for(spec, rel)
        frame = pl.from_dicts([records[i] for i in positions], schema=plan.schema)
        result = validate_frame(frame, plan)
        if result.findings.height == 0:
            continue
        fixes = fixes_of(result.findings, plan, frame.get_column("event_type"))
        per_row: dict[int, list[FieldFinding]] = {}
        cols = result.findings.select("row", "field", "header", "status", "validity", "rule", "message").iter_rows()
        for (row, name, header, status, validity, rule, message), fix in zip(cols, fixes, strict=True):
            fnd = FieldFinding(name, header, _STATUS[status], _VALIDITY[validity], rule, message, fix)
            per_row.setdefault(row, []).append(fnd)
        for row, found in per_row.items():
            out[positions[row]] = tuple(found)
    return out


_STATUS: Final = {s.value: s for s in FieldStatus}
_VALIDITY: Final = {v.value: v for v in Validity}
