"""Why a record is left out of a reporting period: the scope rules as one pure function. No I/O.

The submission state selects the in-scope records with one SQL query (``state._scope_query``); this module
states the same rules in Python, with a reason for every record the query leaves out, so that an operator (and
``cld validate`` on a file) is told which held records are not in the file and why. The rules:

- R-FIL-3: a person who died before the period start, or before the event started, is out;
- R-SCOPE-1/2, R-FIL-1: requests, assessments and reviews are in when completed in the period (their end date,
  or the date of death when earlier, within it, and started by its end); open ones are out;
- R-SCOPE-1, R-FIL-2: services are in when active at any time in the period (open ones included);
- R-SCOPE-10: a 'Carer known by association' row is in when a linked adult has an in-scope event, or when it
  names no linked adult (nothing to judge by);
- rows whose event type or dates cannot be read are kept (``Kind.UNDETERMINED``): a row is never silently
  dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final

from .identity import Kind


class LeftOutReason(StrEnum):
    """Why a held record is not in the period's file (bounded: fit for a summary key or a metric label)."""

    DIED_BEFORE_PERIOD = "died_before_period"
    DIED_BEFORE_EVENT = "died_before_event_start"
    OPEN_EVENT = "open_event"
    COMPLETED_BEFORE_PERIOD = "completed_before_period"
    COMPLETED_AFTER_PERIOD = "completed_after_period"
    STARTED_AFTER_PERIOD = "started_after_period"
    ENDED_BEFORE_PERIOD = "ended_before_period"
    NO_LINKED_ADULT_IN_SCOPE = "no_linked_adult_in_scope"
    OTHER = "other"
    """Left out by the state's scope query for a reason these rules do not name (not expected: a safety net)."""


@dataclass(frozen=True, slots=True)
class ReasonInfo:
    rule: str
    explanation: str


REASONS: Final[dict[LeftOutReason, ReasonInfo]] = {
    LeftOutReason.DIED_BEFORE_PERIOD: ReasonInfo("R-FIL-3", "the person's date of death is before the period start"),
    LeftOutReason.DIED_BEFORE_EVENT: ReasonInfo("R-FIL-3", "the person's date of death is before the event started"),
    LeftOutReason.OPEN_EVENT: ReasonInfo(
        "R-SCOPE-2", "a request, assessment or review with no end date: only completed ones are submitted"
    ),
    LeftOutReason.COMPLETED_BEFORE_PERIOD: ReasonInfo(
        "R-SCOPE-1", "a request, assessment or review completed before the period start"
    ),
    LeftOutReason.COMPLETED_AFTER_PERIOD: ReasonInfo(
        "R-SCOPE-1", "a request, assessment or review completed after the period end"
    ),
    LeftOutReason.STARTED_AFTER_PERIOD: ReasonInfo("R-SCOPE-1", "the event starts after the period end"),
    LeftOutReason.ENDED_BEFORE_PERIOD: ReasonInfo("R-SCOPE-1", "a service that ended before the period start"),
    LeftOutReason.NO_LINKED_ADULT_IN_SCOPE: ReasonInfo(
        "R-SCOPE-10", "a 'Carer known by association' row none of whose linked adults has an event in the period"
    ),
    LeftOutReason.OTHER: ReasonInfo("R-SCOPE-1", "outside the period by the scope rules"),
}


def left_out_reason(
    kind: Kind,
    *,
    start: date | None,
    derived_end: date | None,
    death: date | None,
    period_start: date,
    period_end: date,
) -> LeftOutReason | None:
    """Why a record of this kind and these dates is out of the period; None when it is in (or may be: a
    'Carer known by association' row's scope also depends on its linked adults, :func:`carer_left_out`)."""
    if death is not None and death < period_start:
        return LeftOutReason.DIED_BEFORE_PERIOD
    if death is not None and start is not None and death < start:
        return LeftOutReason.DIED_BEFORE_EVENT
    if kind is Kind.EVENT:
        if derived_end is None:
            return LeftOutReason.OPEN_EVENT
        if derived_end < period_start:
            return LeftOutReason.COMPLETED_BEFORE_PERIOD
        if derived_end > period_end:
            return LeftOutReason.COMPLETED_AFTER_PERIOD
        if start is not None and start > period_end:
            return LeftOutReason.STARTED_AFTER_PERIOD
        return None
    if kind is Kind.SERVICE:
        if start is not None and start > period_end:
            return LeftOutReason.STARTED_AFTER_PERIOD
        if derived_end is not None and derived_end < period_start:
            return LeftOutReason.ENDED_BEFORE_PERIOD
        return None
    return None  # undetermined rows are kept; carers known by association: see carer_left_out


def carer_left_out(linked_people: tuple[str, ...] | frozenset[str], people_in_scope: set[str]) -> bool:
    """R-SCOPE-10: out when it names linked adults and none of them has an in-scope event."""
    return bool(linked_people) and not any(p in people_in_scope for p in linked_people)
