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
from typing import Final

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


def ymd(v: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(year, month, day) Int32 columns of dd/mm/yyyy or yyyy-mm-dd values that are real dates; null otherwise."""
    uk = v.str.contains(_UK_DATE)
    iso = v.str.contains(_ISO_DATE)
    y = pl.when(uk).then(v.str.slice(6, 4)).when(iso).then(v.str.slice(0, 4)).cast(pl.Int32)
    m = pl.when(uk).then(v.str.slice(3, 2)).when(iso).then(v.str.slice(5, 2)).cast(pl.Int32)
    d = pl.when(uk).then(v.str.slice(0, 2)).when(iso).then(v.str.slice(8, 2)).cast(pl.Int32)
    days = pl.when(m == 2).then(29).when(m.is_in([4, 6, 9, 11])).then(30).otherwise(31)
    leap = ((y % 4) == 0) & (((y % 100) != 0) | ((y % 400) == 0))
    ok = (m >= 1) & (m <= 12) & (d >= 1) & (d <= days) & (y >= 1) & ~((m == 2) & (d == 29) & ~leap)
    return (pl.when(ok).then(y), pl.when(ok).then(m), pl.when(ok).then(d))


def year_month(v: pl.Expr) -> pl.Expr:
    """yyyy-mm of a date value (``Method.MONTH``), null when it is not a date."""
    y, m, _ = ymd(v)
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


def birth_outputs(dob: pl.Expr, period_end: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(birth_year, birth_month, age_band_period_end) as ``Pseudonymiser`` gives them (``generalise.age_band``)."""
    by, bm, bd = ymd(dob)
    ey, em, ed = ymd(period_end)
    age = ey - by - ((em * 100 + ed) < (bm * 100 + bd)).cast(pl.Int32)
    band: pl.Expr = pl.when(age.is_null() | (age < 0)).then(pl.lit(UNKNOWN_AGE_BAND))
    for upper, name in _BANDS:
        band = band.when(age < upper).then(pl.lit(name))
    return by.cast(pl.String), bm.cast(pl.String), band.otherwise(pl.lit("95 and above"))


def conversation_flag(v: pl.Expr) -> pl.Expr:
    """'Yes' when the text mentions a conversation, 'No' otherwise, null for null (ASCII values; see with_odd)."""
    return pl.when(v.is_null()).then(None).otherwise(
        pl.when(v.str.to_lowercase().str.contains("conversation", literal=True)).then(pl.lit("Yes")).otherwise(
            pl.lit("No")
        )
    )


# --- postcodes (generalise.postcode_parts) ---------------------------------------------------------------


def postcode_outputs(v: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(sector, district, normalised full postcode) for ASCII values (see with_odd)."""
    pc = v.str.to_uppercase().str.replace_all(" ", "", literal=True)
    full = pc.str.contains(_FULL_POSTCODE)
    outward_only = pc.str.contains(_OUTWARD_ONLY)
    outward = pc.str.head(-3)
    sector = pl.when(full).then(pl.concat_str(outward, pl.lit(" "), pc.str.slice(-3, 1)))
    district = pl.when(full).then(outward).when(outward_only).then(pc)
    return sector, district, pl.when(full).then(pc)


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
    """The event start date as yyyymmdd (0 when unknown): dd/mm/yyyy digits unchecked, as ``row_order`` reads them."""
    v = pl.col("event_start_date")
    uk = v.str.contains(_UK_DATE)
    y, m, d = ymd(v)
    fast = pl.concat_str(v.str.slice(6, 4), v.str.slice(3, 2), v.str.slice(0, 2)).cast(pl.Int64)
    parsed = y.cast(pl.Int64) * 10000 + m.cast(pl.Int64) * 100 + d.cast(pl.Int64)
    return pl.when(uk).then(fast).otherwise(parsed.fill_null(0)).fill_null(0)


PERSON: Final = "__person"
AT: Final = "__at"
SEQ: Final = "__seq"


def person_rows(frame: pl.DataFrame, qi: Sequence[str]) -> pl.DataFrame:
    """Per row of a pseudonymised frame: its person key (null: none), row order and QI values."""
    return frame.select(person_key_expr().alias(PERSON), row_order_expr().alias(AT), *[pl.col(q) for q in qi])


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
    """Keep each person's row with the largest ``at``, the last such row on a tie (frame order is row order)."""
    return (
        people.with_row_index(SEQ)
        .sort([AT, SEQ])
        .unique(subset=[PERSON], keep="last", maintain_order=True)
        .sort(SEQ)
        .drop(SEQ)
    )


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
        for i, name in enumerate(names):
            others = names[:i] + names[i + 1 :]
            if len(names) > 1:
                options.append(_option(classes, others, name, "drop", f"drop {qi_label(name)}", uniques, k_threshold))
            if name in GENERALISATIONS:
                description, fn = GENERALISATIONS[name]
                distinct = classes[name].drop_nulls().unique().to_list()
                coarse = classes.with_columns(
                    pl.col(name).replace_strict(
                        distinct, [fn(v) for v in distinct], default=None, return_dtype=pl.String
                    )
                )
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
