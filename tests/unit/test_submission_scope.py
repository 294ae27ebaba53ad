"""The scope rules with reasons (``scope.left_out_reason``) agree with the state's scope query: every held record
is either in the period's file or left out with a reason, never both, never neither."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from cld_submission.adapters.sqlite_record_store import StateStore
from cld_submission.domain.checks import left_out_of
from cld_submission.domain.identity import Kind
from cld_submission.domain.scope import LeftOutReason, carer_left_out, left_out_reason
from tests.support.builders import LA_CODE, a_ckba_row, a_request_row, a_review_row, a_service_row
from tests.unit.test_submission_state import P_END, P_START, validated

D = date


@pytest.mark.parametrize(
    ("kind", "start", "end", "death", "expected"),
    [
        (Kind.EVENT, D(2024, 5, 1), D(2024, 5, 20), None, None),
        (Kind.EVENT, D(2024, 5, 1), None, None, LeftOutReason.OPEN_EVENT),
        (Kind.EVENT, D(2024, 1, 1), D(2024, 3, 31), None, LeftOutReason.COMPLETED_BEFORE_PERIOD),
        (Kind.EVENT, D(2025, 3, 1), D(2025, 4, 1), None, LeftOutReason.COMPLETED_AFTER_PERIOD),
        (Kind.EVENT, D(2024, 5, 1), D(2024, 5, 20), D(2024, 3, 1), LeftOutReason.DIED_BEFORE_PERIOD),
        (Kind.SERVICE, D(2023, 1, 1), None, None, None),  # open services started earlier are in
        (Kind.SERVICE, D(2023, 1, 1), D(2024, 3, 31), None, LeftOutReason.ENDED_BEFORE_PERIOD),
        (Kind.SERVICE, D(2025, 4, 1), None, None, LeftOutReason.STARTED_AFTER_PERIOD),
        (Kind.SERVICE, D(2024, 6, 1), None, D(2024, 5, 1), LeftOutReason.DIED_BEFORE_EVENT),
        (Kind.UNDETERMINED, None, None, None, None),  # never silently dropped
    ],
)
def test_left_out_reason(
    kind: Kind, start: date | None, end: date | None, death: date | None, expected: LeftOutReason | None
) -> None:
    got = left_out_reason(kind, start=start, derived_end=end, death=death, period_start=P_START, period_end=P_END)
    assert got is expected


def test_a_carer_known_by_association_is_out_only_when_it_names_adults_none_in_scope() -> None:
    assert carer_left_out(("a",), {"b"}) is True
    assert carer_left_out(("a", "b"), {"b"}) is False
    assert carer_left_out((), set()) is False


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore.open(tmp_path / "state")
    yield s
    s.close()


def test_in_scope_and_left_out_partition_what_is_held(store: StateStore) -> None:
    rows = [
        a_request_row(event_reference="IN-1", la_person_unique_identifier="A"),
        a_service_row(event_reference="IN-2", la_person_unique_identifier="B", event_end_date=None),
        a_request_row(event_reference="OPEN", la_person_unique_identifier="C", event_end_date=None),
        a_review_row(
            event_reference="EARLY",
            la_person_unique_identifier="D",
            event_start_date="01/01/2024",
            event_end_date="02/01/2024",
        ),
        a_service_row(event_reference="AFTER", la_person_unique_identifier="E", event_start_date="01/06/2025"),
        a_request_row(event_reference="DEAD", la_person_unique_identifier="F", date_of_death="01/02/2024"),
        a_ckba_row(la_person_unique_identifier="G", adult_1_linked_person_id="C"),  # C has no in-scope event
        a_ckba_row(la_person_unique_identifier="H", adult_1_linked_person_id="A"),  # A has one: in
    ]
    for r in rows:
        store.apply(validated(r))
    store.apply(validated(a_request_row(event_reference="GONE", la_person_unique_identifier="Z"), withdrawn=True))

    inside = list(store.iter_in_scope(LA_CODE, P_START, P_END))
    outside = list(store.iter_left_out(LA_CODE, P_START, P_END))
    assert {r.record_key for r in inside}.isdisjoint({h.record_key for h in outside})
    assert len(inside) + len(outside) == len(rows)  # the withdrawn record is neither held nor left out

    left = left_out_of(outside, in_file=len(inside), period_start=P_START, period_end=P_END)
    got = {g.reason: g.examples for g in left.by_reason}
    assert got.pop("no_linked_adult_in_scope")[0].startswith("key ")
    assert got == {
        "open_event": ("OPEN",),
        "completed_before_period": ("EARLY",),
        "started_after_period": ("AFTER",),
        "died_before_period": ("DEAD",),
    }
    assert (left.held, left.in_file, left.left_out) == (8, 3, 5)
