"""Identity checks central processing depends on, as warnings (issue 13 item 8). Pure, one pass, flat memory.

NHS England traces and pseudonymises people by NHS number and links rows by LA Person Unique Identifier
(R-ID-1); a number that is a placeholder, outside the ranges issued in England, Wales and the Isle of Man, or
shared by several people, quietly merges or splits people in every central figure. None of these is a DQ
failure in the specification (the DQ report only checks the number's format and check digit: CLD020/CLD021),
so they are warnings: they never make a row ``Failed``.

Warnings name a rule id, a row, a field (spec header) and a message; never a value from the record. Identifying
values are compared as keyed-free, in-memory hashes (16 bytes) that never leave the process.

The NHS number ranges come from the ``nhs-number`` package (``REGION_ENGLAND_WALES_IOM``). Numbers starting
``999`` are the recognised test range (synthetic data, this product's own and NHS England's test numbers): they
are counted, and said to be test numbers, but not warned as out of range.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Final

import polars as pl
from nhs_number.constants import REGION_ENGLAND_WALES_IOM
from nhs_number.validate import calculate_checksum

from cld_schemas.spec import Spec, load_spec

MAX_LISTED_PER_RULE: Final = 1000
"""Warnings listed per rule (the counts are always exact): the JSON stays readable at 500k rows."""
TEST_RANGE_PREFIX: Final = "999"
_LINKED: Final = ("adult_1_linked_person_id", "adult_2_linked_person_id", "adult_3_linked_person_id")
_NULL_TEXT: Final = frozenset({"null", "(null)", "<null>", "n/a", "#n/a", "na", "nil", "none"})


def _spellings(word: str) -> set[str]:
    """Every upper/lower-case spelling of ``word`` (values arrive stripped: the file reader and intake strip)."""
    out = {""}
    for ch in word:
        out = {p + c for p in out for c in {ch.lower(), ch.upper()}}
    return out


_NULL_SPELLINGS: Final = frozenset(s for w in _NULL_TEXT for s in _spellings(w))


@dataclass(frozen=True, slots=True)
class IdentityRule:
    id: str
    name: str
    explanation: str


RULES: Final[dict[str, IdentityRule]] = {
    r.id: r
    for r in (
        IdentityRule(
            "ID001",
            "nhs-number-placeholder",
            "A check-digit-valid NHS number that is a placeholder (one digit repeated, such as 0000000000 or "
            "9999999999, or a run of digits such as 0123456789): central tracing treats every row with it as one "
            "person. Leave NHS Number blank when it is not known; NHS England traces it from the person's details.",
        ),
        IdentityRule(
            "ID002",
            "nhs-number-outside-england-wales-iom",
            "A check-digit-valid NHS number outside the ranges issued in England, Wales and the Isle of Man "
            "(4000000000-4999999999, 6000000000-7999999999; 'nhs-number' package): a Scottish CHI, Northern Irish "
            "H&C or unissued number, which central tracing cannot match. Check the number on the person's record.",
        ),
        IdentityRule(
            "ID003",
            "nhs-number-many-people",
            "One NHS number is given for more than one LA Person Unique Identifier: central processing takes "
            "them for one person (R-ID-1). Merge the duplicate client records or correct the number.",
        ),
        IdentityRule(
            "ID004",
            "linked-person-not-in-file",
            "An Adult Linked Person_ID names no LA Person Unique Identifier in the file: the cared-for adult must be "
            "a service user in the same submission (R-FLD-15). Add their rows or leave the link blank.",
        ),
        IdentityRule(
            "ID005",
            "null-text",
            "The cell holds placeholder text (NULL, N/A or similar) instead of being empty: it is read as a value "
            "(DHSC turns the text NULL into a blank in 30 fields; other systems do not). Leave the cell empty.",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class IdentityWarning:
    rule: str
    row: int
    field: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "row": self.row, "field": self.field, "message": self.message, "severity": "warning"}


def _h(value: str) -> bytes:
    return hashlib.blake2b(value.encode("utf-8"), digest_size=16).digest()


def _digits(value: str) -> str:
    return "".join(value.split())


def check_digit_valid(number: str) -> bool:
    return len(number) == 10 and number.isdigit() and calculate_checksum(number[:9]) == int(number[9])


def is_placeholder(number: str) -> bool:
    """One digit repeated, or a run of consecutive digits up or down (checked by the caller's check digit)."""
    if len(set(number)) == 1:
        return True
    steps = {(int(b) - int(a)) % 10 for a, b in pairwise(number)}
    return steps in ({1}, {9})


def in_england_wales_iom(number: str) -> bool:
    """Within the ranges issued in England, Wales and the Isle of Man (``nhs-number``'s region data)."""
    n = int(number)
    return any(r.start <= n <= r.end for r in REGION_ENGLAND_WALES_IOM.ranges)


def in_test_range(number: str) -> bool:
    return number.startswith(TEST_RANGE_PREFIX)


@dataclass
class IdentityChecker:
    """Feed every row (``add(row, record)``, ``row`` as the caller numbers rows), then ``warnings()``."""

    spec: Spec = field(default_factory=load_spec)
    counts: Counter[str] = field(default_factory=Counter)
    test_range_numbers: int = 0
    _listed: list[IdentityWarning] = field(default_factory=list)
    _listed_per_rule: Counter[str] = field(default_factory=Counter)
    _nhs_people: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)
    """NHS number -> (the first LA person id seen with it, its row)."""
    _shared: dict[bytes, set[bytes]] = field(default_factory=dict)
    _people: set[bytes] = field(default_factory=set)
    _links: list[tuple[int, str, bytes]] = field(default_factory=list)
    _finished: bool = False

    def __post_init__(self) -> None:
        self._headers = {f.name: f.header for f in self.spec.fields}
        self._codes: dict[str, frozenset[str]] = {
            f.name: frozenset(v.value.casefold() for cl in (f.code_lists or {}).values() for v in cl.values)
            for f in self.spec.fields
            if f.format == "code"
        }

    def _warn(self, rule: str, row: int, name: str, message: str) -> None:
        self.counts[rule] += 1
        if self._listed_per_rule[rule] < MAX_LISTED_PER_RULE:
            self._listed_per_rule[rule] += 1
            self._listed.append(IdentityWarning(rule, row, self._headers.get(name, name), message))

    def add(self, row: int, record: Mapping[str, str | None]) -> None:
        if not _NULL_SPELLINGS.isdisjoint(record.values()):  # the common case (none) decided at C speed
            for name, value in record.items():
                if value in _NULL_SPELLINGS and value.casefold() not in self._codes.get(name, frozenset()):
                    self._warn("ID005", row, name, "placeholder text instead of an empty cell: leave the cell empty")

        person_raw = (record.get("la_person_unique_identifier") or "").strip()
        person = _h(person_raw) if person_raw and person_raw.casefold() not in _NULL_TEXT else None
        if person is not None:
            self._people.add(person)
        for name in _LINKED:
            linked = (record.get(name) or "").strip()
            if linked and linked.casefold() not in _NULL_TEXT:
                self._links.append((row, name, _h(linked)))

        number = _digits(record.get("nhs_number") or "")
        if not check_digit_valid(number):
            return  # blank, or a format/check-digit failure the DQ rules report (CLD020/CLD021)
        if is_placeholder(number):
            self._warn("ID001", row, "nhs_number", "a placeholder NHS number (repeated or consecutive digits)")
        elif in_test_range(number):
            self.test_range_numbers += 1
        elif not in_england_wales_iom(number):
            self._warn("ID002", row, "nhs_number", "an NHS number outside the England, Wales and Isle of Man ranges")
        if person is not None:
            key = _h(number)
            seen = self._nhs_people.get(key)
            if seen is None:
                self._nhs_people[key] = (person, row)
            elif seen[0] != person:
                people = self._shared.setdefault(key, {seen[0]})
                if person not in people:
                    people.add(person)
                    self._warn(
                        "ID003",
                        row,
                        "nhs_number",
                        f"this NHS number is also given for another LA Person Unique Identifier (row {seen[1]})",
                    )

    def warnings(self) -> list[IdentityWarning]:
        """Every warning listed (up to ``MAX_LISTED_PER_RULE`` per rule), by row. Call once, after the last row."""
        if not self._finished:
            self._finished = True
            for row, name, linked in self._links:
                if linked not in self._people:
                    self._warn("ID004", row, name, "names no LA Person Unique Identifier in this file")
            self._links.clear()
        return sorted(self._listed, key=lambda w: (w.row, w.rule, w.field))

    def to_json(self) -> dict[str, Any]:
        listed = self.warnings()
        return {
            "warnings": [w.to_json() for w in listed],
            "warnings_by_rule": {
                rid: {"count": n, "name": RULES[rid].name, "explanation": RULES[rid].explanation}
                for rid, n in sorted(self.counts.items())
            },
            "warnings_listed_per_rule_max": MAX_LISTED_PER_RULE,
            "nhs_numbers_in_test_range": self.test_range_numbers,
            "nhs_numbers_shared_by_people": len(self._shared),
            "test_range_note": f"NHS numbers starting {TEST_RANGE_PREFIX} are a recognised test range (synthetic "
            "data): not warned as outside the England, Wales and Isle of Man ranges.",
        }


# ---- columnar: the same warnings from frames (``cld validate``), keys as 64-bit hashes in polars columns ----

_PY_SPACE: Final = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_OK, _PLACEHOLDER, _TEST, _OUTSIDE = 0, 1, 2, 3


def _number_verdict(value: str) -> tuple[str | None, int]:
    """(the number's digits when check-digit valid, else None; its kind): Python per distinct value, as ``add``."""
    number = _digits(value)
    if not check_digit_valid(number):
        return None, _OK
    if is_placeholder(number):
        return number, _PLACEHOLDER
    if in_test_range(number):
        return number, _TEST
    if not in_england_wales_iom(number):
        return number, _OUTSIDE
    return number, _OK


_PLAIN_RX: Final = r"^[0-9]{10}$"
_INVALID: Final = -1
_RUNS: Final = sorted(
    {str(d) * 10 for d in range(10)}
    | {"".join(str((d + i) % 10) for i in range(10)) for d in range(10)}
    | {"".join(str((d - i) % 10) for i in range(10)) for d in range(10)}
)
"""Every placeholder of 10 ASCII digits: one digit repeated, or a run up or down (``is_placeholder``)."""


def _plain_verdicts(v: pl.Expr) -> pl.Expr:
    """For a number of exactly 10 ASCII digits, :func:`_number_verdict`'s kind as an expression (-1: the check
    digit fails); null for any other value (judged in Python). Modulus 11 as ``nhs_number.calculate_checksum``:
    weights 10..2, 11 -> 0, 10 never valid."""
    digits = [v.str.slice(i, 1).cast(pl.Int32, strict=False) for i in range(10)]
    total = sum((digits[i] * (10 - i) for i in range(9)), pl.lit(0, pl.Int32))
    check = 11 - total % 11
    check = pl.when(check == 11).then(0).otherwise(check)
    ok = (check != 10) & (check == digits[9])
    n = v.cast(pl.Int64, strict=False)
    inside = pl.any_horizontal([n.is_between(r.start, r.end) for r in REGION_ENGLAND_WALES_IOM.ranges])
    kind = (
        pl.when(~ok)
        .then(pl.lit(_INVALID, pl.Int8))
        .when(v.is_in(_RUNS))
        .then(pl.lit(_PLACEHOLDER, pl.Int8))
        .when(v.str.starts_with(TEST_RANGE_PREFIX))
        .then(pl.lit(_TEST, pl.Int8))
        .when(~inside)
        .then(pl.lit(_OUTSIDE, pl.Int8))
        .otherwise(pl.lit(_OK, pl.Int8))
    )
    return pl.when(v.str.contains(_PLAIN_RX)).then(kind).otherwise(None)


@dataclass
class FrameIdentityChecker(IdentityChecker):
    """:class:`IdentityChecker` fed whole frames (``add_frame``): the same counts, warnings and order, with no
    Python per row. Per frame it keeps only 64-bit hashes (person, linked person, NHS number) and row numbers in
    polars columns; the checks across the file (ID003, ID004) are group-bys at the end. A 64-bit hash in place of
    a 16-byte digest: two different values colliding in one file is about one chance in 10^7 at a million rows."""

    _people_h: list[pl.Series] = field(default_factory=list)
    _links_h: list[pl.DataFrame] = field(default_factory=list)
    _numbers_h: list[pl.DataFrame] = field(default_factory=list)
    _verdicts: dict[str, tuple[str | None, int]] = field(default_factory=dict)
    _shared_count: int = 0

    def add_frame(self, offset: int, frame: pl.DataFrame) -> None:
        """Rows ``offset + 1`` on: one String column per spec field name, blank = null, values stripped."""
        rows = pl.int_range(offset + 1, offset + 1 + frame.height, dtype=pl.Int64, eager=True).alias("row")
        self._null_text(frame, rows)
        person = self._key_of(frame, "la_person_unique_identifier")
        if person is not None:
            self._people_h.append(person.drop_nulls().unique())
        for name in _LINKED:
            linked = self._key_of(frame, name)
            if linked is not None:
                links = pl.DataFrame({"row": rows, "key": linked}).drop_nulls("key")
                self._links_h.append(links.with_columns(pl.lit(name).alias("name")))
        if "nhs_number" in frame.columns:
            self._numbers(frame, rows, person)

    def _null_text(self, frame: pl.DataFrame, rows: pl.Series) -> None:
        hits: list[pl.DataFrame] = []
        for i, name in enumerate(frame.columns):
            allowed = [s for s in _NULL_SPELLINGS if s.casefold() not in self._codes.get(name, frozenset())]
            mask = frame.get_column(name).is_in(allowed).fill_null(False)
            if mask.any():
                hits.append(
                    pl.DataFrame({"row": rows.filter(mask), "col": pl.Series([i] * int(mask.sum()), dtype=pl.Int32)})
                )
        if hits:
            names = frame.columns
            for row, col in pl.concat(hits).sort(["row", "col"]).iter_rows():
                self._warn("ID005", row, names[col], "placeholder text instead of an empty cell: leave the cell empty")

    @staticmethod
    def _key_of(frame: pl.DataFrame, name: str) -> pl.Series | None:
        """The column's values as 64-bit hashes; null where blank or placeholder text (as ``add`` skips them)."""
        if name not in frame.columns:
            return None
        v = pl.col(name)
        keep = v.is_not_null() & ~v.is_in(sorted(_NULL_SPELLINGS))
        return frame.select(pl.when(keep).then(v.hash()).otherwise(None).alias("key")).to_series()

    def _numbers(self, frame: pl.DataFrame, rows: pl.Series, person: pl.Series | None) -> None:
        raw = frame.get_column("nhs_number")
        plain = frame.select(pl.col("nhs_number").str.contains(_PLAIN_RX).fill_null(False)).to_series()
        fast = frame.select(_plain_verdicts(pl.col("nhs_number"))).to_series()  # null where not plain
        distinct = raw.filter(~plain).drop_nulls().unique().to_list()  # the rest: Python, as ``add``
        digits: list[str | None] = []
        kinds: list[int] = []
        for value in distinct:
            hit = self._verdicts.get(value)
            if hit is None:
                hit = _number_verdict(value)
                if len(self._verdicts) > 200_000:
                    self._verdicts.clear()
                self._verdicts[value] = hit
            digits.append(hit[0])
            kinds.append(hit[1])
        slow_number = raw.replace_strict(distinct, digits, default=None, return_dtype=pl.String)
        slow_kind = raw.replace_strict(distinct, kinds, default=_OK, return_dtype=pl.Int8)
        plain_valid = plain & fast.is_not_null() & (fast != _INVALID)
        number = pl.select(pl.when(plain_valid).then(raw).otherwise(slow_number)).to_series()
        kind = pl.select(pl.when(plain_valid).then(fast).otherwise(slow_kind)).to_series()
        valid = number.is_not_null()
        self.test_range_numbers += int((valid & (kind == _TEST)).sum())
        flagged = pl.DataFrame({"row": rows, "kind": kind}).filter(valid & kind.is_in([_PLACEHOLDER, _OUTSIDE]))
        for row, k in flagged.iter_rows():
            if k == _PLACEHOLDER:
                self._warn("ID001", row, "nhs_number", "a placeholder NHS number (repeated or consecutive digits)")
            else:
                self._warn(
                    "ID002", row, "nhs_number", "an NHS number outside the England, Wales and Isle of Man ranges"
                )
        if person is not None:
            keyed = pl.DataFrame({"row": rows, "number": number.hash(), "person": person}).filter(
                valid & person.is_not_null()
            )
            self._numbers_h.append(keyed)

    def warnings(self) -> list[IdentityWarning]:
        if not self._finished:
            self._shared_numbers()
            people = pl.concat(self._people_h).unique() if self._people_h else pl.Series([], dtype=pl.UInt64)
            if self._links_h:
                links = (
                    pl.concat(self._links_h)
                    .filter(~pl.col("key").is_in(people.implode()))
                    .sort("row", maintain_order=True)
                )
                for row, _key, name in links.iter_rows():
                    self._warn("ID004", row, name, "names no LA Person Unique Identifier in this file")
            self._people_h.clear()
            self._links_h.clear()
        return super().warnings()

    def _shared_numbers(self) -> None:
        """ID003: per NHS number, each person after the first, at the row where it first appears with it."""
        if not self._numbers_h:
            return
        pairs = (
            pl.concat(self._numbers_h)
            .group_by(["number", "person"])
            .agg(pl.col("row").min())
            .sort(["number", "row"])
            .with_columns(pl.col("row").first().over("number").alias("first"), pl.len().over("number").alias("n"))
        )
        self._numbers_h.clear()
        shared = pairs.filter(pl.col("n") > 1)
        later = shared.filter(pl.col("row") != pl.col("first")).sort("row")
        self._shared_count = shared.get_column("number").n_unique()
        for row, first in later.select("row", "first").iter_rows():
            self._warn(
                "ID003",
                row,
                "nhs_number",
                f"this NHS number is also given for another LA Person Unique Identifier (row {first})",
            )

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["nhs_numbers_shared_by_people"] = self._shared_count
        return out
