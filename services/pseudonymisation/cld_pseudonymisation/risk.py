"""Re-identification risk of pseudonymised CLD over a set of quasi-identifiers (QIs).

The unit is the PERSON, not the row: a person with twelve service rows is still one person, and counting rows
would make a person look "5-anonymous" on their own. Each person contributes one QI tuple, taken from their
latest row (latest event start date; later rows win ties). People are grouped into equivalence classes of
identical QI tuples; a blank value is a value of its own.

Figures (all over people): class count, minimum class size k, people unique on the QIs (class of 1) and their
share, people in classes smaller than the threshold, prosecutor risk 1/k per person (average = classes/people,
maximum = 1/min k), and for each QI how many uniques disappear if it is dropped or generalised.

:class:`RiskAccumulator` is incremental: ``add`` replaces the person's previous tuple, ``summary`` is O(1)-ish
(for gauges after every record), ``figures`` is O(classes x QIs) and independent of the number of rows.
:func:`measure_risk` is the batch form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

DEFAULT_QI: Final = ("age_band_period_end", "gender", "ethnicity", "postcode_sector", "primary_support_reason")
DEFAULT_K_THRESHOLD: Final = 5

QiTuple = tuple[str | None, ...]
_BITS: Final = 32
_FIELD_MASK: Final = (1 << _BITS) - 1


def _before_separator(value: str | None) -> str | None:
    if value is None:
        return None
    for sep in (" - ", ":"):
        if sep in value:
            return value.split(sep, 1)[0].strip().casefold()
    return value.casefold()


def _wider_age_band(value: str | None) -> str | None:
    if value in ("18 to 24", "25 to 44", "45 to 64"):
        return "18 to 64"
    if value in ("65 to 74", "75 to 84", "85 to 94", "95 and above"):
        return "65 and above"
    return value


def _district_of_sector(value: str | None) -> str | None:
    return value.split(" ", 1)[0] if value else value


def _birth_decade(value: str | None) -> str | None:
    return value[:3] + "0s" if value and len(value) == 4 else value


GENERALISATIONS: Final[dict[str, tuple[str, Callable[[str | None], str | None]]]] = {
    "postcode_sector": ("postcode sector -> postcode district", _district_of_sector),
    "ethnicity": ("ethnicity -> broad ethnic group (e.g. 'Asian or Asian British')", _before_separator),
    "age_band_period_end": ("age band -> wider band (Under 18, 18 to 64, 65 and above)", _wider_age_band),
    "primary_support_reason": (
        "primary support reason -> its category (e.g. 'Physical Support', 'Social Support')",
        _before_separator,
    ),
    "birth_year": ("birth year -> decade of birth", _birth_decade),
}
"""QIs with a known coarser form: (what the change is called, value -> coarser value)."""

_LABELS: Final = {
    "age_band_period_end": "age band",
    "postcode_sector": "postcode sector",
    "postcode_district": "postcode district",
    "primary_support_reason": "primary support reason",
}


def qi_label(name: str) -> str:
    return _LABELS.get(name, name.replace("_", " "))


@dataclass(frozen=True, slots=True)
class RiskOption:
    """What happens to the risk if one QI is dropped or generalised (all other QIs unchanged)."""

    qi: str
    change: str
    """'drop' or 'generalise'."""
    description: str
    uniques_after: int
    uniques_removed: int
    people_below_k_after: int
    min_k_after: int


@dataclass(frozen=True, slots=True)
class RiskSummary:
    """The cheap figures (what the service exports as gauges)."""

    people: int
    classes: int
    min_k: int
    uniques: int
    unique_share: float
    average_prosecutor_risk: float
    max_prosecutor_risk: float


@dataclass(frozen=True, slots=True)
class RiskFigures:
    qi: tuple[str, ...]
    k_threshold: int
    rows: int
    rows_without_person: int
    people: int
    classes: int
    min_k: int
    uniques: int
    unique_share: float
    people_below_k: int
    share_below_k: float
    average_prosecutor_risk: float
    max_prosecutor_risk: float
    class_size_histogram: dict[int, int]
    """Class size -> number of classes of that size (no values, so no personal data)."""
    options: tuple[RiskOption, ...]
    """Per QI: drop and, where known, generalise; most effective first."""
    warnings: tuple[str, ...] = field(default=())

    @property
    def below_threshold(self) -> bool:
        return self.people > 0 and self.min_k < self.k_threshold

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["qi"] = list(self.qi)
        d["class_size_histogram"] = {str(k): v for k, v in sorted(self.class_size_histogram.items())}
        d["options"] = [asdict(o) for o in self.options]
        d["warnings"] = list(self.warnings)
        return d


class RiskAccumulator:
    """Per-person QI tuples and their equivalence classes, kept up to date one row at a time.

    Memory grows with people (one entry each) and distinct QI tuples, never with rows. The Kafka service
    keeps one per LA and reporting period.
    """

    __slots__ = ("_canon", "_classes", "_hist", "_people", "k_threshold", "qi", "rows", "rows_without_person")

    def __init__(self, qi: Sequence[str] = DEFAULT_QI, *, k_threshold: int = DEFAULT_K_THRESHOLD) -> None:
        if not qi:
            raise ValueError("at least one quasi-identifier is needed")
        if k_threshold < 2:
            raise ValueError("the k threshold must be at least 2")
        self.qi: tuple[str, ...] = tuple(qi)
        self.k_threshold = k_threshold
        self.rows = 0
        self.rows_without_person = 0
        self._people: dict[str, tuple[int, QiTuple]] = {}
        self._classes: dict[QiTuple, int] = {}
        self._hist: dict[int, int] = {}
        self._canon: dict[QiTuple, QiTuple] = {}

    def __len__(self) -> int:
        return len(self._people)

    def __repr__(self) -> str:
        return f"RiskAccumulator(qi={self.qi!r}, people={len(self._people)})"

    def _hist_move(self, old: int, new: int) -> None:
        hist = self._hist
        if old:
            left = hist[old] - 1
            if left:
                hist[old] = left
            else:
                del hist[old]
        if new:
            hist[new] = hist.get(new, 0) + 1

    def add(self, person_key: str | None, qi: QiTuple, *, at: int = 0) -> None:
        """Record a row: the person's QI tuple becomes ``qi`` unless a stored row is later (``at`` larger).

        ``person_key`` None counts the row as having no person (it cannot be placed in a class).
        """
        self.rows += 1
        if person_key is None:
            self.rows_without_person += 1
            return
        if len(qi) != len(self.qi):
            raise ValueError(f"expected {len(self.qi)} quasi-identifier values, got {len(qi)}")
        qi = self._canon.setdefault(qi, qi)
        prev = self._people.get(person_key)
        classes = self._classes
        if prev is not None:
            prev_at, prev_qi = prev
            if at < prev_at:
                return
            self._people[person_key] = (at, qi)
            if prev_qi is qi:
                return
            n = classes[prev_qi]
            if n == 1:
                del classes[prev_qi]
            else:
                classes[prev_qi] = n - 1
            self._hist_move(n, n - 1)
        else:
            self._people[person_key] = (at, qi)
        n = classes.get(qi, 0)
        classes[qi] = n + 1
        self._hist_move(n, n + 1)

    def add_people(self, people: Iterable[tuple[str, QiTuple, int]], *, rows: int, rows_without_person: int) -> None:
        """A batch already reduced to each person's latest row (``columnar.latest_per_person``): the same state as
        ``add`` of every row of the batch in order, with one update per person instead of one per row."""
        for key, qi, at in people:
            self.add(key, qi, at=at)
            self.rows -= 1
        self.rows += rows
        self.rows_without_person += rows_without_person

    def summary(self) -> RiskSummary:
        people = len(self._people)
        classes = len(self._classes)
        min_k = min(self._hist) if self._hist else 0
        uniques = self._hist.get(1, 0)
        return RiskSummary(
            people=people,
            classes=classes,
            min_k=min_k,
            uniques=uniques,
            unique_share=uniques / people if people else 0.0,
            average_prosecutor_risk=classes / people if people else 0.0,
            max_prosecutor_risk=1 / min_k if min_k else 0.0,
        )

    def _encoded_classes(self) -> tuple[list[tuple[int, int]], list[list[str | None]]]:
        """Each class as (code, size): QI i's value number sits in bits [i*_BITS, (i+1)*_BITS) of one int.

        The what-if options then work on ints (mask a field out, or swap in its generalised value's number)
        instead of building tuples: several times faster on hundreds of thousands of classes.
        """
        numbers: list[dict[str | None, int]] = [{} for _ in self.qi]
        values: list[list[str | None]] = [[] for _ in self.qi]
        encoded: list[tuple[int, int]] = []
        for qi, n in self._classes.items():
            code = 0
            for i, v in enumerate(qi):
                num = numbers[i].get(v)
                if num is None:
                    num = numbers[i][v] = len(values[i])
                    values[i].append(v)
                code |= num << (i * _BITS)
            encoded.append((code, n))
        return encoded, values

    def _option(
        self, encoded: list[tuple[int, int]], i: int, change: str, description: str, remap: list[int] | None
    ) -> RiskOption:
        shift = i * _BITS
        keep_mask = ~(_FIELD_MASK << shift)
        counts: dict[int, int] = {}
        get = counts.get
        if remap is None:
            for code, n in encoded:
                key = code & keep_mask
                counts[key] = get(key, 0) + n
        else:
            for code, n in encoded:
                key = (code & keep_mask) | (remap[(code >> shift) & _FIELD_MASK] << shift)
                counts[key] = get(key, 0) + n
        sizes = counts.values()
        uniques_after = sum(1 for n in sizes if n == 1)
        return RiskOption(
            qi=self.qi[i],
            change=change,
            description=description,
            uniques_after=uniques_after,
            uniques_removed=self._hist.get(1, 0) - uniques_after,
            people_below_k_after=sum(n for n in sizes if n < self.k_threshold),
            min_k_after=min(sizes) if counts else 0,
        )

    def figures(self) -> RiskFigures:
        s = self.summary()
        below = sum(size * count for size, count in self._hist.items() if size < self.k_threshold)
        options: list[RiskOption] = []
        if s.people:
            encoded, values = self._encoded_classes()
            for i, name in enumerate(self.qi):
                if len(self.qi) > 1:
                    options.append(self._option(encoded, i, "drop", f"drop {qi_label(name)}", None))
                if name in GENERALISATIONS:
                    description, fn = GENERALISATIONS[name]
                    coarse: dict[str | None, int] = {}
                    remap = [coarse.setdefault(fn(v), len(coarse)) for v in values[i]]
                    options.append(self._option(encoded, i, "generalise", description, remap))
        options.sort(key=lambda o: (o.people_below_k_after, o.uniques_after, o.change != "generalise"))
        figures = RiskFigures(
            qi=self.qi,
            k_threshold=self.k_threshold,
            rows=self.rows,
            rows_without_person=self.rows_without_person,
            people=s.people,
            classes=s.classes,
            min_k=s.min_k,
            uniques=s.uniques,
            unique_share=s.unique_share,
            people_below_k=below,
            share_below_k=below / s.people if s.people else 0.0,
            average_prosecutor_risk=s.average_prosecutor_risk,
            max_prosecutor_risk=s.max_prosecutor_risk,
            class_size_histogram=dict(self._hist),
            options=tuple(options),
        )
        return with_warnings(figures)


def with_warnings(f: RiskFigures) -> RiskFigures:
    warnings: list[str] = []
    if f.rows_without_person:
        warnings.append(
            f"{f.rows_without_person} row(s) have neither an LA person identifier nor an NHS number and could "
            "not be counted as anyone: the risk figures leave them out."
        )
    if f.below_threshold:
        qi_words = ", ".join(qi_label(q) for q in f.qi)
        warnings.append(
            f"{f.people_below_k} of {f.people} people ({f.share_below_k:.1%}) share their combination of "
            f"{qi_words} with fewer than {f.k_threshold - 1} other people (smallest group: {f.min_k}); "
            f"{f.uniques} ({f.unique_share:.1%}) are unique."
        )
        helpful = [o for o in f.options if o.people_below_k_after < f.people_below_k][:3]
        if helpful:
            steps = "; ".join(
                f"{o.description}: {o.people_below_k_after} people below k={f.k_threshold} ({o.uniques_after} unique)"
                for o in helpful
            )
            warnings.append(f"Changes that would help most (one at a time): {steps}.")
        else:
            warnings.append(
                "No single change to one quasi-identifier lowers the number of people below the threshold; "
                "consider generalising several together or suppressing the small groups."
            )
    if not f.people:
        warnings.append("No people were counted, so there is no risk figure.")
    return replace(f, warnings=tuple(warnings))


def measure_risk(
    people: Iterable[tuple[str | None, QiTuple] | tuple[str | None, QiTuple, int]],
    *,
    qi: Sequence[str] = DEFAULT_QI,
    k_threshold: int = DEFAULT_K_THRESHOLD,
) -> RiskFigures:
    """Batch form: ``(person_key, qi_tuple)`` or ``(person_key, qi_tuple, at)`` per row, in any order."""
    acc = RiskAccumulator(qi, k_threshold=k_threshold)
    for item in people:
        if len(item) == 3:
            acc.add(item[0], item[1], at=item[2])
        else:
            acc.add(item[0], item[1])
    return acc.figures()
