"""Which reporting periods get their own risk label (cld_pseudonymisation.periods; issue 10, finding 7)."""

from __future__ import annotations

from datetime import date

import pytest

from cld_pseudonymisation.periods import COLLECTION_PERIODS, OTHER_PERIOD, period_label, quarter_end_on_or_after

TODAY = date(2026, 12, 3)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ((2025, 4, 1), (2026, 3, 31)),
        ((2022, 7, 1), (2023, 6, 30)),  # the first period of the mandatory collection
        ((2025, 10, 1), (2026, 9, 30)),
        ((2026, 1, 1), (2026, 12, 31)),  # the quarter in progress
        ((2026, 4, 1), (2027, 3, 31)),  # one quarter ahead
    ],
)
def test_rolling_twelve_months_ending_at_a_quarter_end_get_their_own_label(
    start: tuple[int, int, int], end: tuple[int, int, int]
) -> None:
    assert period_label(start, end, today=TODAY) == f"{date(*start).isoformat()}_{date(*end).isoformat()}"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ((2025, 4, 2), (2026, 3, 31)),  # not 12 months
        ((2025, 5, 1), (2026, 4, 30)),  # a monthly period: month end, not a quarter end
        ((2025, 1, 1), (2026, 3, 31)),  # 15 months
        ((2022, 4, 1), (2023, 3, 31)),  # before the mandatory collection
        ((2026, 7, 1), (2027, 6, 30)),  # two quarters ahead
        ((1, 1, 1), (9999, 12, 31)),
        ((2026, 3, 31), (2025, 4, 1)),
        ((2025, 2, 30), (2026, 3, 31)),  # not a date
        (None, (2026, 3, 31)),
        ((2025, 4, 1), None),
    ],
)
def test_everything_else_is_other(start: tuple[int, int, int] | None, end: tuple[int, int, int] | None) -> None:
    assert period_label(start, end, today=TODAY) == OTHER_PERIOD


def test_the_number_of_labels_is_bounded_by_time_not_input() -> None:
    """Every (start, end) pair over 20 years of days yields at most one label per allowed quarter end."""
    labels = set()
    d = date(2020, 1, 1)
    while d < date(2030, 1, 1):
        a_year_before = date(d.year - 1, d.month, min(d.day, 28)).toordinal() + 1 + (d.day - min(d.day, 28))
        start = date.fromordinal(a_year_before)
        labels.add(period_label((start.year, start.month, start.day), (d.year, d.month, d.day), today=TODAY))
        labels.add(period_label((2025, 4, 1), (d.year, d.month, d.day), today=TODAY))
        d = date.fromordinal(d.toordinal() + 1)
    # 2023-06-30 .. 2027-03-31: 16 quarter ends, plus "other"
    assert len(labels) == 17
    assert COLLECTION_PERIODS.latest_period_end(TODAY) == date(2027, 3, 31)
    assert quarter_end_on_or_after(date(2026, 3, 31)) == date(2026, 3, 31)
    assert quarter_end_on_or_after(date(2026, 4, 1)) == date(2026, 6, 30)
