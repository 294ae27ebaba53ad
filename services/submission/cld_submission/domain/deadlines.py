"""Submission deadlines as configuration. Pure.

Default rule: the quarterly submission window closes ONE MONTH after the quarter end (R-SUB-6: NHS England
code comments say the window closes one month after quarter end), i.e. the last day of the month after
each quarter end: 30 April, 31 July, 31 October, 31 January. An explicit list of dates (``dates``)
replaces the rule, for years when the collection publishes other dates; the quarter a listed date is for
is the last quarter end before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from pydantic import BaseModel, ConfigDict, Field

from .lifecycle import COVERING, Submission

_QUARTER_END_MONTHS = (3, 6, 9, 12)


class DeadlineRule(BaseModel):
    model_config = ConfigDict(frozen=True)

    months_after_quarter_end: int = Field(
        default=1, ge=0, le=12, description="The deadline is the last day of the month this many months after."
    )
    dates: tuple[date, ...] = Field(default=(), description="Explicit deadlines; when given, the rule is unused.")


def _month_end(year: int, month: int) -> date:
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def quarter_end_before(d: date) -> date:
    """The last quarter end strictly before ``d``."""
    for year in (d.year, d.year - 1):
        for m in reversed(_QUARTER_END_MONTHS):
            qe = _month_end(year, m)
            if qe < d:
                return qe
    raise AssertionError("unreachable")


def next_deadline(today: date, rule: DeadlineRule) -> tuple[date, date]:
    """(deadline, quarter end it is for): the first deadline on or after ``today``."""
    if rule.dates:
        upcoming = sorted(d for d in rule.dates if d >= today)
        if upcoming:
            return upcoming[0], quarter_end_before(upcoming[0])
        # Past the last listed date: fall back to the rule rather than report nothing.
    candidates = []
    for year in (today.year - 1, today.year, today.year + 1):
        for m in _QUARTER_END_MONTHS:
            qe = _month_end(year, m)
            candidates.append((_month_end(year, m + rule.months_after_quarter_end), qe))
    return min(c for c in candidates if c[0] >= today)


def days_remaining(today: date, rule: DeadlineRule) -> int:
    deadline, _ = next_deadline(today, rule)
    return (deadline - today).days


def window_closes_at(deadline: date) -> datetime:
    """The instant a deadline day's window closes: midnight (UTC) at the end of that day."""
    return datetime.combine(deadline + timedelta(days=1), time(0), tzinfo=UTC)


def seconds_remaining(now: datetime, rule: DeadlineRule) -> float:
    """Seconds until the next submission window closes (the end of the deadline day, UTC); the base unit of
    ``cld_submission_deadline_remaining_seconds``. A naive ``now`` is taken as UTC."""
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    deadline, _ = next_deadline(now.astimezone(UTC).date(), rule)
    return (window_closes_at(deadline) - now).total_seconds()


def covers_next_deadline(today: date, rule: DeadlineRule, submissions: Iterable[Submission]) -> bool:
    """True when an approved, sent or acknowledged submission's period reaches the quarter end due next."""
    _, quarter_end = next_deadline(today, rule)
    return any(s.state in COVERING and s.period_end >= quarter_end for s in submissions)
