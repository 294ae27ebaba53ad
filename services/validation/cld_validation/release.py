"""Which specification release a record is checked against, and whether a file looks like the other release.

Pure functions over plain data. The cut-over dates are data in the spec (``Spec.release_selection``, with their
sources and whether they are exact); nothing here hard-codes a date.

Order of precedence, most specific first:

1. the upload's ``cld-release`` header (``topics.HEADER_RELEASE``; ``cld validate --release``): the sender knows
   which release its file is written to;
2. the source's configured release (tenants registry, ``Source.release``): a system not yet moved to Release 2;
3. the deployment's configured release (``ValidationSettings.release``), when one is set;
4. the release in force for the record's reporting period: the latest cut-over on or before its Reporting
   Period End Date (then its Event End Date, then its Event Start Date, when those are blank or unreadable);
5. the latest release, when the record has no readable date at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import polars as pl

from cld_schemas.contract import parse_date
from cld_schemas.spec import Release, ReleaseSelection, Spec, load_spec

_DATE_FIELDS: Final = ("reporting_period_end_date", "event_end_date", "event_start_date")
_MEMO: dict[tuple[int, str], tuple[ReleaseSelection | None, ReleaseChoice]] = {}
"""(id of the cut-over data, Reporting Period End Date text) -> (that data, choice). The entry holds the data, so its
id cannot be reused while the entry exists; bounded; a pure function's results only."""
_MEMO_MAX: Final = 4096
MIN_TELLING_VALUES: Final = 5
"""A hint about the other release needs at least this many values that belong to only one release."""


class ReleaseBasis(StrEnum):
    """Why a release was chosen (bounded: fit for a log field or a summary)."""

    UPLOAD = "upload"
    SOURCE = "source"
    SETTING = "setting"
    REPORTING_PERIOD_END = "reporting_period_end_date"
    EVENT_END = "event_end_date"
    EVENT_START = "event_start_date"
    LATEST = "latest"


@dataclass(frozen=True, slots=True)
class ReleaseChoice:
    release: Release
    basis: ReleaseBasis


def parse_release(text: str | None) -> Release | None:
    """``r1``/``R2``/``2``/``Release 1`` as a release; None for blank or anything else (the caller decides)."""
    if text is None:
        return None
    t = "".join(text.casefold().split()).removeprefix("release").removeprefix("r")
    return {"1": Release.R1, "2": Release.R2}.get(t)


def latest_release(spec: Spec) -> Release:
    sel = spec.release_selection
    if sel is not None and sel.cut_overs:
        return max(sel.cut_overs, key=lambda c: c.from_).release
    return max(spec.releases, key=lambda r: spec.releases[r].valid_from)


def release_by_period(record: Mapping[str, str | None], spec: Spec | None = None) -> ReleaseChoice:
    """Steps 4-5 above: the release in force for the record's period, by the spec's cut-over data."""
    spec = spec or load_spec()
    first = record.get(_DATE_FIELDS[0])
    sel = spec.release_selection
    memo_key = (id(sel), first) if first else None
    if memo_key is not None and (hit := _MEMO.get(memo_key)) is not None and hit[0] is sel:
        return hit[1]  # the common case: every record of a period states the same end date
    choice = _by_period(record, spec)
    if memo_key is not None and choice.basis is ReleaseBasis.REPORTING_PERIOD_END and len(_MEMO) < _MEMO_MAX:
        _MEMO[memo_key] = (sel, choice)
    return choice


def _by_period(record: Mapping[str, str | None], spec: Spec) -> ReleaseChoice:
    sel = spec.release_selection
    if sel is not None:
        for name in _DATE_FIELDS:
            day = parse_date(record.get(name))
            if day is None:
                continue
            found = sel.release_on(day)
            if found is not None:
                return ReleaseChoice(found, ReleaseBasis(name))
            # before the first cut-over (an old period): the earliest release is the nearest
            return ReleaseChoice(min(sel.cut_overs, key=lambda c: c.from_).release, ReleaseBasis(name))
    return ReleaseChoice(latest_release(spec), ReleaseBasis.LATEST)


def select_release(
    record: Mapping[str, str | None],
    *,
    upload: Release | None = None,
    source: Release | None = None,
    configured: Release | None = None,
    spec: Spec | None = None,
) -> ReleaseChoice:
    """The release ``record`` is checked against (module docstring for the order)."""
    if upload is not None:
        return ReleaseChoice(upload, ReleaseBasis.UPLOAD)
    if source is not None:
        return ReleaseChoice(source, ReleaseBasis.SOURCE)
    if configured is not None:
        return ReleaseChoice(configured, ReleaseBasis.SETTING)
    return release_by_period(record, spec)


# ---- does the file look like the other release? -----------------------------------------------------------


def _only_in(spec: Spec) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Per coded field with a list in both releases: (Release 1 labels, Release 2 labels) of the meanings whose
    wording differs between the releases. A value missing from a partial list proves nothing, so only a
    meaning both lists hold, worded differently, tells the releases apart."""
    out: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    for f in spec.fields:
        r1, r2 = f.code_list(Release.R1), f.code_list(Release.R2)
        if r1 is None or r2 is None:
            continue
        v1 = {v.value for v in r1.values}
        v2 = {v.value for v in r2.values}
        keys1 = {v.key for v in r1.values}
        keys2 = {v.key for v in r2.values}
        only1 = frozenset(v.value for v in r1.values if v.value not in v2 and v.key in keys2)
        only2 = frozenset(v.value for v in r2.values if v.value not in v1 and v.key in keys1)
        if only1 or only2:
            out[f.name] = (only1, only2)
    return out


@dataclass
class ReleaseLabels:
    """Counts the coded values of a file that are the label of one release only (exact spelling)."""

    spec: Spec
    counts: dict[Release, int] = field(default_factory=lambda: {Release.R1: 0, Release.R2: 0})
    _only: dict[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._only = _only_in(self.spec)

    def add(self, record: Mapping[str, str | None]) -> None:
        for name, (only1, only2) in self._only.items():
            value = record.get(name)
            if not value:
                continue
            if value in only1:
                self.counts[Release.R1] += 1
            elif value in only2:
                self.counts[Release.R2] += 1

    def add_frame(self, frame: pl.DataFrame) -> None:
        """Every row of a frame at once (String columns by spec field name, blank = null): the same counts."""
        for name, (only1, only2) in self._only.items():
            if name not in frame.columns:
                continue
            v = frame.get_column(name)
            self.counts[Release.R1] += int(v.is_in(sorted(only1)).sum())
            self.counts[Release.R2] += int(v.is_in(sorted(only2)).sum())

    @property
    def telling(self) -> int:
        """Values that belong to exactly one release (the ones that say which release a file is written to)."""
        return sum(self.counts.values())

    def looks_like(self) -> Release | None:
        """The release most telling values belong to (more than half of at least ``MIN_TELLING_VALUES``)."""
        if self.telling < MIN_TELLING_VALUES:
            return None
        for rel, n in self.counts.items():
            if 2 * n > self.telling:
                return rel
        return None

    def hint(self, checked: Release) -> str | None:
        """A one-line hint when the file looks like another release than the one it was checked against."""
        other = self.looks_like()
        if other is None or other is checked:
            return None
        label = self.spec.releases[other].label
        return (
            f"{self.counts[other]:,} of {self.telling:,} coded values are {label} labels: is this a {label} file? "
            f"(checked against {self.spec.releases[checked].label}; choose the release with --release "
            f"{other.value})"
        )

    def to_json(self, checked: Release) -> dict[str, object]:
        return {
            "checked_against": checked.value,
            "telling_values": self.telling,
            "labels": {rel.value: n for rel, n in self.counts.items()},
            "looks_like": (other.value if (other := self.looks_like()) is not None else None),
            "hint": self.hint(checked),
        }
