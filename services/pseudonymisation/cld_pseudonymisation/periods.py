"""Which reporting periods get a risk accumulator and metric label of their own. Pure.

The reporting period dates come from the record, i.e. from the source system: left unchecked, every made-up
period would add ``cld_risk_*`` series and a risk accumulator (issue 10, finding 7: 2,000 records with made-up
periods took 6 series to 6,000). Only the periods the collection asks for get their own label; every other
value (a made-up period, a monthly or partial period, missing or unreadable dates) is measured together under
the one label :data:`OTHER_PERIOD`.

The rule, as data (:class:`PeriodRule`), with its sources:

- a period is a **rolling 12 months ending at a quarter end**: start = the day after the same quarter end a
  year earlier (``2025-04-01`` .. ``2026-03-31``). Source: spec rule R-SUB-1 ("mandatory to submit rolling
  12-month reporting periods each quarter"), the spec notes of ``reporting_period_start_date`` ("Files must
  cover rolling 12-month periods submitted quarterly") and ``/work/shared/reference/nhs-context.md`` ("Each
  quarter an LA sends a file covering a rolling 12 months").
- the period ends **on or after 30 June 2023**, the first quarter end of the mandatory collection
  (nhs-context.md: "Mandatory since 1 April 2023"; R-SUB-6's first selection window is 2023/24).
- the period ends **no later than one quarter after the quarter in progress** (a file for the current
  quarter may be sent early, and clocks differ), so the number of labels grows by four a year per LA, never
  with the input.

Some LAs also submit monthly (R-SUB-1): such a period ends at a month end that is not a quarter end and is
measured under ``other``, like any period the quarterly collection does not ask for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

OTHER_PERIOD: Final = "other"
"""The one label (and accumulator per LA) for every period outside :class:`PeriodRule`."""

QUARTER_END_MONTHS: Final = (3, 6, 9, 12)


def _month_end(year: int, month: int) -> date:
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    return date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)


def _is_quarter_end(d: date) -> bool:
    return d.month in QUARTER_END_MONTHS and d == _month_end(d.year, d.month)


def quarter_end_on_or_after(d: date) -> date:
    """The first quarter end on or after ``d``."""
    month = QUARTER_END_MONTHS[(d.month - 1) // 3]
    return _month_end(d.year, month)


@dataclass(frozen=True, slots=True)
class PeriodRule:
    """The collection's reporting periods (sources in the module docstring)."""

    first_period_end: date = date(2023, 6, 30)
    """The first quarter end of the mandatory collection (mandatory since 1 April 2023)."""
    months: int = 12
    """Rolling 12 months."""
    quarters_ahead: int = 1
    """Periods may end at most this many quarters after the quarter in progress."""

    def latest_period_end(self, today: date) -> date:
        current = quarter_end_on_or_after(today)
        return _month_end(current.year, current.month + 3 * self.quarters_ahead)

    def allows(self, start: date, end: date, today: date) -> bool:
        if not self.first_period_end <= end <= self.latest_period_end(today) or not _is_quarter_end(end):
            return False
        return start == _month_end(end.year, end.month - self.months) + timedelta(days=1)


COLLECTION_PERIODS: Final = PeriodRule()


def _date(ymd: tuple[int, int, int] | None) -> date | None:
    if ymd is None:
        return None
    try:
        return date(*ymd)
    except ValueError:
        return None


def period_label(
    start: tuple[int, int, int] | None,
    end: tuple[int, int, int] | None,
    *,
    today: date,
    rule: PeriodRule = COLLECTION_PERIODS,
) -> str:
    """``yyyy-mm-dd_yyyy-mm-dd`` for a period the collection asks for, else :data:`OTHER_PERIOD`."""
    s, e = _date(start), _date(end)
    if s is None or e is None or not rule.allows(s, e, today):
        return OTHER_PERIOD
    return f"{s.isoformat()}_{e.isoformat()}"


__all__ = ["COLLECTION_PERIODS", "OTHER_PERIOD", "PeriodRule", "period_label", "quarter_end_on_or_after"]
