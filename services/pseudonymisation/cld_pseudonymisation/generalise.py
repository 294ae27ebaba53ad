"""Generalisation of dates and postcodes, as NHS England's derived fields do it (rules.md section 9).

Pure functions, written for speed (they run once per row): no ``strptime``, no regex on dates.
Dates are read as dd/mm/yyyy (the file format) or yyyy-mm-dd (ISO, as other services may carry them);
anything else is treated as unknown, never passed through.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from cld_schemas.contract import parse_date as contract_date

AGE_BANDS: Final = (
    "Under 18",
    "18 to 24",
    "25 to 44",
    "45 to 64",
    "65 to 74",
    "75 to 84",
    "85 to 94",
    "95 and above",
    "Unknown",
)
UNKNOWN_AGE_BAND: Final = "Unknown"


def _band(age: int) -> str:
    for upper, band in (
        (18, "Under 18"),
        (25, "18 to 24"),
        (45, "25 to 44"),
        (65, "45 to 64"),
        (75, "65 to 74"),
        (85, "75 to 84"),
        (95, "85 to 94"),
    ):
        if age < upper:
            return band
    return "95 and above"


_BAND_BY_AGE: Final = tuple(_band(a) for a in range(96))


def age_band(age: int | None) -> str:
    """DHSC's ``Der_Age_Band`` for an age in whole years (None or negative -> 'Unknown')."""
    if age is None or age < 0:
        return UNKNOWN_AGE_BAND
    return _BAND_BY_AGE[age] if age < 96 else "95 and above"


def parse_date(value: str | None) -> tuple[int, int, int] | None:
    """(year, month, day) from dd/mm/yyyy or yyyy-mm-dd, or None if the value is not a real date (the one date
    parser of the record path, ``cld_schemas.contract.parse_date``, as the tuple the generalisations use)."""
    day = contract_date(value)
    return None if day is None else (day.year, day.month, day.day)


def age_at(birth: tuple[int, int, int], on: tuple[int, int, int]) -> int:
    """Age in completed years on a date."""
    return on[0] - birth[0] - ((on[1], on[2]) < (birth[1], birth[2]))


# --- postcodes -------------------------------------------------------------------------------------------

_FULL_POSTCODE = re.compile(r"[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}")
_OUTWARD_ONLY = re.compile(r"[A-Z]{1,2}[0-9][A-Z0-9]?")


def normalise_postcode(value: str | None) -> str | None:
    """Upper case, no spaces. None for blank values."""
    if value is None:
        return None
    pc = value.upper().replace(" ", "")
    return pc or None


PostcodeParts = tuple[str | None, str | None, str | None]
"""(sector, district, normalised full postcode). The full postcode is for the lookup only; never output."""

_NO_PARTS: Final[PostcodeParts] = (None, None, None)


def postcode_parts(value: str | None) -> PostcodeParts:
    """Sector ('LS1 4') and district ('LS1') of a postcode; an outward code alone gives the district only.

    A value that is not a UK postcode shape gives nothing (it is never passed through).
    """
    if value is None:
        return _NO_PARTS
    pc = value.upper().replace(" ", "")
    if _FULL_POSTCODE.fullmatch(pc):
        outward = pc[:-3]
        return (f"{outward} {pc[-3]}", outward, pc)
    if _OUTWARD_ONLY.fullmatch(pc):
        return (None, pc, None)
    return _NO_PARTS


# --- ONS postcode lookup (ONSPD / NSPL shaped) ----------------------------------------------------------

POSTCODE_COLUMNS: Final = ("pcds", "pcd", "pcd2", "pcd7", "pcd8", "postcode")
LSOA_COLUMNS: Final = ("lsoa21cd", "lsoa21", "lsoa11cd", "lsoa11", "lsoa")
MSOA_COLUMNS: Final = ("msoa21cd", "msoa21", "msoa11cd", "msoa11", "msoa")
"""Accepted column names (case-insensitive), in order of preference: 2021 areas before 2011 areas."""


class LookupFileError(ValueError):
    """The postcode lookup file cannot be used. Messages carry no values from the file."""


class PostcodeLookup:
    """Normalised full postcode -> (LSOA code, MSOA code). Area codes are shared, so a full ONSPD fits."""

    __slots__ = ("_areas", "lsoa_column", "msoa_column")

    def __init__(
        self,
        rows: Iterable[tuple[str, str | None, str | None]],
        *,
        lsoa_column: str | None = None,
        msoa_column: str | None = None,
    ) -> None:
        shared: dict[tuple[str | None, str | None], tuple[str | None, str | None]] = {}
        areas: dict[str, tuple[str | None, str | None]] = {}
        for pc, lsoa, msoa in rows:
            key = normalise_postcode(pc)
            if key is None or not _FULL_POSTCODE.fullmatch(key):
                continue
            pair = (lsoa or None, msoa or None)
            areas[key] = shared.setdefault(pair, pair)
        self._areas = areas
        self.lsoa_column = lsoa_column
        self.msoa_column = msoa_column

    def __len__(self) -> int:
        return len(self._areas)

    def __repr__(self) -> str:
        return f"PostcodeLookup({len(self._areas)} postcodes)"

    def areas(self, normalised_postcode: str) -> tuple[str | None, str | None] | None:
        return self._areas.get(normalised_postcode)

    @classmethod
    def from_csv(cls, path: Path) -> PostcodeLookup:
        """Read an ONSPD/NSPL-like CSV: a postcode column plus an LSOA and/or an MSOA column (see above)."""
        try:
            with path.open(encoding="utf-8-sig", newline="") as fh:
                reader = csv.reader(fh)
                header = [h.strip().lower() for h in next(reader, [])]
                pc_i = _first_column(header, POSTCODE_COLUMNS)
                lsoa_i = _first_column(header, LSOA_COLUMNS)
                msoa_i = _first_column(header, MSOA_COLUMNS)
                if pc_i is None:
                    raise LookupFileError(
                        f"the postcode lookup has no postcode column (expected one of {', '.join(POSTCODE_COLUMNS)})"
                    )
                if lsoa_i is None and msoa_i is None:
                    raise LookupFileError(
                        "the postcode lookup has no LSOA or MSOA column (expected one of "
                        f"{', '.join(LSOA_COLUMNS + MSOA_COLUMNS)})"
                    )
                width = max(i for i in (pc_i, lsoa_i, msoa_i) if i is not None) + 1
                lookup = cls(
                    (
                        (
                            row[pc_i],
                            sys.intern(row[lsoa_i].strip()) if lsoa_i is not None else None,
                            sys.intern(row[msoa_i].strip()) if msoa_i is not None else None,
                        )
                        for row in reader
                        if len(row) >= width
                    ),
                    lsoa_column=header[lsoa_i] if lsoa_i is not None else None,
                    msoa_column=header[msoa_i] if msoa_i is not None else None,
                )
        except FileNotFoundError:
            raise LookupFileError("the postcode lookup file does not exist") from None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise LookupFileError(f"the postcode lookup file cannot be read ({type(exc).__name__})") from None
        if not lookup:
            raise LookupFileError("the postcode lookup holds no usable postcodes")
        return lookup


def _first_column(header: list[str], names: tuple[str, ...]) -> int | None:
    for n in names:
        if n in header:
            return header.index(n)
    return None
