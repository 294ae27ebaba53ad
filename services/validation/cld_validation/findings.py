"""What a finding is, and the limits both engines share (the columnar engine and the reference ``rules``).

Plain data, no I/O: ``FieldFinding`` (a failed field, with its rule, message and fix), the longest value any field
accepts, and the field sets of the carer and event rules (XF005, XF006).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cld_schemas.spec import FieldStatus, Validity

MAX_TEXT_LENGTH: Final = 4096
"""Longest value accepted in any field (the spec's own maximum lengths are unknown: sources.md question 7)."""

CARER_FIELDS: Final = frozenset(  # the carer-only fields (XF005)
    {
        "total_hrs_caring_per_week",
        "no_of_adults_being_cared_for",
        "adult_1_linked_person_id",
        "adult_2_linked_person_id",
        "adult_3_linked_person_id",
    }
)
EVENT_GROUPS: Final = frozenset({"event", "request", "assessment", "service", "review", "cost"})


@dataclass(frozen=True, slots=True)
class FieldFinding:
    """A failed field. ``rule`` is a rule id from the spec data (CLDnnn/XFnnn) or a status rule id."""

    name: str
    header: str
    status: FieldStatus
    validity: Validity
    rule: str
    message: str
    fix: str = ""
    """How to fix it, in the analyst's words (never quoting a personal value), or an honest 'no fix known'."""
