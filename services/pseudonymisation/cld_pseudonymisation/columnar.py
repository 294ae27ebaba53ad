"""Pseudonymisation's generalisations and the risk figures as polars expressions over a frame (issue 11 item 2).

A batch of records is a frame of String columns named by the spec's field names (null = blank; a column the
frame lacks is read as blank). The expressions here give exactly what the per-record functions of
:mod:`cld_pseudonymisation.generalise` and :mod:`cld_pseudonymisation.pseudonymiser` give (the reference
oracle, :mod:`cld_pseudonymisation.reference`, and a differential property test hold them so):

- dates read as dd/mm/yyyy or yyyy-mm-dd (``generalise.parse_date``), as (year, month, day) integer columns;
- the age band at the period end, birth year and month, yyyy-mm months, the 'conversation' flag;
- postcode sector and district (``generalise.postcode_parts``);
- the normalised identifiers the pseudonyms are computed over;
- the person key and row order of the risk figures (``pseudonymiser.person_key``, ``row_order``).

Python's ``str.upper``/``str.lower``/``str.split`` are Unicode-aware in ways polars' need not be (a long s
upper-cases to 'S', and \\x1c-\\x1f are whitespace to Python): the expressions are used on ASCII values and
:func:`python_over_distinct` applies the per-record function to each distinct non-ASCII value of the batch
(rare in CLD data), so the result is Python's exactly.

:func:`risk_figures_of_people` computes :class:`~cld_pseudonymisation.risk.RiskFigures` from one row per
person by group-by, as ``RiskAccumulator.figures`` does from its classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import polars as pl

from cld_pseudonymisation.generalise import UNKNOWN_AGE_BAND
from cld_pseudonymisation.risk import GENERALISATIONS, RiskFigures, RiskOption, qi_label, with_warnings

NON_ASCII: Final = r"[^\x00-\x7F]"
_UK_DATE: Final = r"^[0-9]{2}/[0-9]{2}/[0-9]{4}$"
_ISO_DATE: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_FULL_POSTCODE: Final = r"^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$"
_OUTWARD_ONLY: Final = r"^[A-Z]{1,2}[0-9][A-Z0-9]?$"
_PY_ASCII_WHITESPACE: Final = r"[\t\n\x0b\x0c\r\x1c-\x1f ]+"
"""The ASCII characters ``str.split()`` splits on (``str.isspace``)."""


def is_ascii(v: pl.Expr) -> pl.Expr:
    """True for ASCII text (null for null)."""
    return ~v.str.contains(NON_ASCII)


def python_over_distinct(
    column: pl.Series, fn: Callable[[str], tuple[str | None, ...]], width: int
) -> list[tuple[list[str], list[str | None]]]:
    """``fn`` over each distinct non-ASCII value of ``column``: per output, (values, results) for ``replace_strict``.

    This is how Python's Unicode semantics stay exact without a per-row Python loop: ASCII values take the
    expressions, the few others their per-record function, once per distinct value."""
    odd = column.filter(column.str.contains(NON_ASCII)).unique().to_list()
    results = [fn(v) for v in odd]
    return [(odd, [r[i] for r in results]) for i in range(width)]


def with_odd(fast: pl.Expr, v: pl.Expr, odd: tuple[list[str], list[str | None]]) -> pl.Expr:
    """``fast`` on ASCII (and null) values; the per-record results of the batch's non-ASCII values elsewhere."""
    values, results = odd
    if not values:
        return fast
    return pl.when(v.str.contains(NON_ASCII)).then(v.replace_strict(values, results, default=None)).otherwise(fast)


# --- dates (generalise.parse_date) -----------------------------------------------------------------------
# Computed in stages (with_columns), each column once: an expression that repeats a sub-expression is planned
# and evaluated once per repetition, and the date checks repeat the parsed parts many times.

_FORM: Final = "__form"
_TEXT: Final = "__text"
PY_WHITESPACE: Final = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""Every character Python's ``str.strip()`` removes (``str.isspace``; polars' own idea of whitespace differs).
The same constant as the columnar validation engine's, which this service may not import."""
_UK: Final = 1
_ISO: Final = 2


def date_parts(column: str) -> tuple[str, str, str]:
    """Names of the (year, month, day) columns :func:`with_dates` adds for ``column``."""
    return (f"{column}__y", f"{column}__m", f"{column}__d")


def with_dates(frame: pl.LazyFrame, columns: Sequence[str]) -> pl.LazyFrame:
    """``frame`` plus, per column, (year, month, day) Int32 columns (:func:`date_parts`) of dd/mm/yyyy or
    yyyy-mm-dd values that are real dates, null otherwise; and ``{column}__form`` (1 dd/mm/yyyy, 2 ISO)."""
    # cld_schemas.contract.parse_date ignores surrounding whitespace (str.strip's, hence PY_WHITESPACE)
    frame = frame.with_columns(pl.col(c).str.strip_chars(PY_WHITESPACE).alias(c + _TEXT) for c in columns)
    forms = [
        pl.when(pl.col(c + _TEXT).str.contains(_UK_DATE))
        .then(pl.lit(_UK, dtype=pl.Int8))
        .when(pl.col(c + _TEXT).str.contains(_ISO_DATE))
        .then(pl.lit(_ISO, dtype=pl.Int8))
        .alias(c + _FORM)
        for c in columns
    ]
    frame = frame.with_columns(forms)
    raw: list[pl.Expr] = []
    for c in columns:
        v, form = pl.col(c + _TEXT), pl.col(c + _FORM)
        for name, uk, iso in zip(date_parts(c), ((6, 4), (3, 2), (0, 2)), ((0, 4), (5, 2), (8, 2)), strict=True):
            part = pl.when(form == _UK).then(v.str.slice(*uk)).when(form == _ISO).then(v.str.slice(*iso))
            raw.append(part.cast(pl.Int32).alias(name))
    frame = frame.with_columns(raw)
    checked: list[pl.Expr] = []
    for c in columns:
        names = date_parts(c)
        y, m, d = (pl.col(n) for n in names)
        days = pl.when(m == 2).then(29).when(m.is_in([4, 6, 9, 11])).then(30).otherwise(31)
        leap = ((y % 4) == 0) & (((y % 100) != 0) | ((y % 400) == 0))
        ok = (m >= 1) & (m <= 12) & (d >= 1) & (d <= days) & (y >= 1) & ~((m == 2) & (d == 29) & ~leap)
        checked.append(ok.fill_null(value=False).alias(c + "__ok"))
    frame = frame.with_columns(checked)
    return frame.with_columns(
        pl.when(pl.col(c + "__ok")).then(pl.col(n)).alias(n) for c in columns for n in date_parts(c)
    ).drop([c + "__ok" for c in columns])


def year_month(column: str) -> pl.Expr:
    """yyyy-mm of a date value (``Method.MONTH``), null when it is not a date (after :func:`with_dates`)."""
    y, m, _ = (pl.col(n) for n in date_parts(column))
    return pl.concat_str(y.cast(pl.String).str.zfill(4), pl.lit("-"), m.cast(pl.String).str.zfill(2))


_BANDS: Final = (
    (18, "Under 18"),
    (25, "18 to 24"),
    (45, "25 to 44"),
    (65, "45 to 64"),
    (75, "65 to 74"),
    (85, "75 to 84"),
    (95, "85 to 94"),
)


def age_expr(dob: str, period_end: str) -> pl.Expr:
    """Age in completed years at the period end (``generalise.age_at``), after :func:`with_dates` of both."""
    by, bm, bd = (pl.col(n) for n in date_parts(dob))
    ey, em, ed = (pl.col(n) for n in date_parts(period_end))
    return ey - by - ((em * 100 + ed) < (bm * 100 + bd)).cast(pl.Int32)


def age_band_expr(age: pl.Expr) -> pl.Expr:
    """DHSC's ``Der_Age_Band`` of an age column (``generalise.age_band``; null or negative -> 'Unknown')."""
    band: Any = pl.when(age.is_null() | (age < 0)).then(pl.lit(UNKNOWN_AGE_BAND))
    for upper, name in _BANDS:
        band = band.when(age < upper).then(pl.lit(name))
    return cast(pl.Expr, band.otherwise(pl.lit("95 and above")))


def conversation_flag(v: pl.Expr) -> pl.Expr:
    """'Yes' when the text mentions a conversation, 'No' otherwise, null for null (ASCII values; see with_odd)."""
    mentions = v.str.to_lowercase().str.contains("conversation", literal=True)
    return pl.when(v.is_null()).then(None).when(mentions).then(pl.lit("Yes")).otherwise(pl.lit("No"))


# --- postcodes (generalise.postcode_parts) ---------------------------------------------------------------


def with_postcode(frame: pl.LazyFrame, column: str) -> pl.LazyFrame:
    """``frame`` plus ``__pc`` (upper case, no spaces; ASCII values) and ``__pc_kind`` (2 full, 1 outward only)."""
    frame = frame.with_columns(pl.col(column).str.to_uppercase().str.replace_all(" ", "", literal=True).alias("__pc"))
    pc = pl.col("__pc")
    kind = pl.when(pc.str.contains(_FULL_POSTCODE)).then(2).when(pc.str.contains(_OUTWARD_ONLY)).then(1).otherwise(0)
    return frame.with_columns(kind.alias("__pc_kind"))


def postcode_outputs() -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(sector, district, normalised full postcode) after :func:`with_postcode` (ASCII values; see with_odd)."""
    pc, kind = pl.col("__pc"), pl.col("__pc_kind")
    outward = pc.str.head(-3)
    sector = pl.when(kind == 2).then(pl.concat_str(outward, pl.lit(" "), pc.str.slice(-3, 1)))
    district = pl.when(kind == 2).then(outward).when(kind == 1).then(pc)
    return sector, district, pl.when(kind == 2).then(pc)


# --- identifiers (pseudonymiser.normalise_*) -------------------------------------------------------------


def normalised_nhs_number(v: pl.Expr) -> pl.Expr:
    """ASCII digits only (``[^0-9]`` is the same class in Python's re and Rust's regex, for every value)."""
    return v.str.replace_all("[^0-9]", "")


def normalised_identifier(v: pl.Expr) -> pl.Expr:
    """Whitespace runs collapsed to one space, stripped, upper case (ASCII values; see with_odd)."""
    return v.str.replace_all(_PY_ASCII_WHITESPACE, " ").str.strip_chars(" ").str.to_uppercase()


# --- risk (pseudonymiser.person_key, row_order; risk.RiskAccumulator) ------------------------------------


def person_key_expr() -> pl.Expr:
    """'la:' + pseudonymised LA person id, else 'nhs:' + pseudonymised NHS number, else null."""
    la = pl.col("la_person_unique_identifier_pseudo")
    nhs = pl.col("nhs_number_pseudo")
    return (
        pl.when(la.is_not_null() & (la != ""))
        .then(pl.lit("la:") + la)
        .when(nhs.is_not_null() & (nhs != ""))
        .then(pl.lit("nhs:") + nhs)
    )


def row_order_expr() -> pl.Expr:
    """The event start date as yyyymmdd (0 when unknown): dd/mm/yyyy digits unchecked, as ``row_order`` reads
    them (after :func:`with_dates` of ``event_start_date``)."""
    v = pl.col("event_start_date")
    y, m, d = (pl.col(n).cast(pl.Int64) for n in date_parts("event_start_date"))
    fast = pl.concat_str(v.str.slice(6, 4), v.str.slice(3, 2), v.str.slice(0, 2)).cast(pl.Int64)
    return pl.when(v.str.contains(_UK_DATE)).then(fast).otherwise(y * 10000 + m * 100 + d).fill_null(0)


_PSEUDO_KEYS: Final = ("la_person_unique_identifier_pseudo", "nhs_number_pseudo")
PERSON: Final = "__person"
AT: Final = "__at"
SEQ: Final = "__seq"


def person_rows(frame: pl.DataFrame, qi: Sequence[str]) -> pl.DataFrame:
    """Per row of a pseudonymised frame: its person key (null: none), row order and QI values."""
    dated = with_dates(frame.lazy().select(["event_start_date", *qi, *_PSEUDO_KEYS]), ["event_start_date"])
    return dated.select(person_key_expr().alias(PERSON), row_order_expr().alias(AT), *[pl.col(q) for q in qi]).collect()


class FrameRisk:
    """The risk figures of pseudonymised frames, by group-by: ``RiskAccumulator``'s figures, for a whole file.

    Each frame's rows are reduced to one per person (their latest row) and kept; the kept frames are merged
    into one row per person whenever they outgrow the merged state, so memory grows with people, not rows,
    and each row is merged a bounded number of times."""

    def __init__(self, qi: Sequence[str], *, k_threshold: int) -> None:
        self.qi = tuple(qi)
        self.k_threshold = k_threshold
        self.rows = 0
        self.rows_without_person = 0
        self._state: pl.DataFrame | None = None
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0

    def add_frame(self, pseudonymised: pl.DataFrame) -> None:
        rows = person_rows(pseudonymised, self.qi)
        with_person = rows.filter(pl.col(PERSON).is_not_null())
        self.rows += rows.height
        self.rows_without_person += rows.height - with_person.height
        latest = latest_per_person(with_person)
        self._pending.append(latest)
        self._pending_rows += latest.height
        if self._pending_rows >= max(100_000, self._state.height if self._state is not None else 0):
            self._merge()

    def _merge(self) -> None:
        parts = ([self._state] if self._state is not None else []) + self._pending
        if parts:
            self._state = latest_per_person(pl.concat(parts))  # state first: a later frame wins a tie
        self._pending, self._pending_rows = [], 0

    def people(self) -> pl.DataFrame:
        """One row per person: person, at, the QIs."""
        self._merge()
        if self._state is None:
            return pl.DataFrame(schema={PERSON: pl.String, AT: pl.Int64, **dict.fromkeys(self.qi, pl.String)})
        return self._state

    def figures(self) -> RiskFigures:
        return risk_figures_of_people(
            self.people(),
            qi=self.qi,
            k_threshold=self.k_threshold,
            rows=self.rows,
            rows_without_person=self.rows_without_person,
        )


def latest_per_person(people: pl.DataFrame) -> pl.DataFrame:
    """Keep each person's row with the largest ``at``, the last such row on a tie (frame order is row order).

    One key per row, ``at`` then the row's position, and a maximum per person over a window: hashing, no sort."""
    order = pl.col(AT).cast(pl.Int64) * (1 << 32) + pl.col(SEQ).cast(pl.Int64)
    return people.with_row_index(SEQ).filter(order == order.max().over(PERSON)).drop(SEQ)


def risk_figures_of_people(
    people: pl.DataFrame, *, qi: Sequence[str], k_threshold: int, rows: int, rows_without_person: int
) -> RiskFigures:
    """``RiskAccumulator.figures`` by group-by over one row per person (:meth:`FrameRisk.people`)."""
    names = list(qi)
    n_people = people.height
    classes = people.group_by(names).len("n") if n_people else pl.DataFrame()
    sizes = classes["n"] if n_people else pl.Series("n", [], dtype=pl.UInt32)
    hist_frame = sizes.value_counts(name="count") if n_people else None
    hist = {int(s): int(c) for s, c in hist_frame.iter_rows()} if hist_frame is not None else {}
    n_classes = classes.height if n_people else 0
    min_k = int(sizes.min()) if n_people else 0  # type: ignore[arg-type]
    uniques = hist.get(1, 0)
    below = sum(size * count for size, count in hist.items() if size < k_threshold)
    options: list[RiskOption] = []
    if n_people:
        # The what-if group-bys run on integer codes of the values (equal values, equal codes; null stays null).
        coded = classes.select(*(_codes(pl.col(q)).alias(q) for q in names), "n")
        for i, name in enumerate(names):
            others = names[:i] + names[i + 1 :]
            if len(names) > 1:
                options.append(_option(coded, others, name, "drop", f"drop {qi_label(name)}", uniques, k_threshold))
            if name in GENERALISATIONS:
                description, fn = GENERALISATIONS[name]
                distinct = classes[name].drop_nulls().unique().to_list()
                wider = classes[name].replace_strict(
                    distinct, [fn(v) for v in distinct], default=None, return_dtype=pl.String
                )
                coarse = coded.with_columns(_codes(pl.lit(wider)).alias(name))
                options.append(_option(coarse, names, name, "generalise", description, uniques, k_threshold))
    options.sort(key=lambda o: (o.people_below_k_after, o.uniques_after, o.change != "generalise"))
    figures = RiskFigures(
        qi=tuple(names),
        k_threshold=k_threshold,
        rows=rows,
        rows_without_person=rows_without_person,
        people=n_people,
        classes=n_classes,
        min_k=min_k,
        uniques=uniques,
        unique_share=uniques / n_people if n_people else 0.0,
        people_below_k=below,
        share_below_k=below / n_people if n_people else 0.0,
        average_prosecutor_risk=n_classes / n_people if n_people else 0.0,
        max_prosecutor_risk=1 / min_k if min_k else 0.0,
        class_size_histogram=hist,
        options=tuple(options),
    )
    return with_warnings(figures)


def _codes(values: pl.Expr) -> pl.Expr:
    """A dense integer code per distinct text value (null stays null)."""
    return values.cast(pl.Categorical).to_physical()


def _option(
    classes: pl.DataFrame, by: list[str], qi: str, change: str, description: str, uniques: int, k_threshold: int
) -> RiskOption:
    counts = classes.group_by(by).agg(pl.col("n").sum())["n"]
    uniques_after = int((counts == 1).sum())
    return RiskOption(
        qi=qi,
        change=change,
        description=description,
        uniques_after=uniques_after,
        uniques_removed=uniques - uniques_after,
        people_below_k_after=int(counts.filter(counts < k_threshold).sum()),
        min_k_after=int(counts.min()) if counts.len() else 0,  # type: ignore[arg-type]
    )
