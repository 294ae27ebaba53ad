"""Dataset-level checks on hand-made fixtures: each check fires when it should and stays quiet otherwise."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cld_submission.adapters.sqlite_record_store import StateStore
from cld_submission.domain.checks import (
    CheckResult,
    DatasetChecker,
    ManifestEntry,
    PartialThresholds,
    Severity,
    SubmissionProfile,
    compare_with_previous,
    derive_period,
    diff_checks,
    diff_manifests,
)
from cld_submission.domain.records import Incoming, StoredRecord
from tests.support.builders import (
    LA_CODE,
    Row,
    a_request_row,
    a_service_row,
    an_assessment_row,
    synthetic_nhs_number,
)
from tests.unit.test_submission_state import P_END, P_START, validated

IMPORT = date(2025, 4, 15)


def run_checks(tmp_path: Path, rows: list[Row]) -> tuple[DatasetChecker, list[CheckResult]]:
    store = StateStore.open(tmp_path / "state")
    try:
        store.apply_many([_incoming(r) for r in rows])
        checker = DatasetChecker(period_start=P_START, period_end=P_END, import_date=IMPORT)
        for rec in store.iter_in_scope(LA_CODE, P_START, P_END):
            checker.add(rec)
    finally:
        store.close()
    return checker, checker.finish()


def _incoming(row: Row) -> Incoming:
    return Incoming(validated(row))


def by_id(results: list[CheckResult], check_id: str) -> CheckResult | None:
    return next((r for r in results if r.id == check_id), None)


def test_duplicate_events_by_dhsc_unique_event_key(tmp_path: Path) -> None:
    # Two references, same person, start, end, client type and route: one event twice (R-DUP-1).
    _, results = run_checks(tmp_path, [a_request_row(event_reference="A"), a_request_row(event_reference="B")])
    dup = by_id(results, "DS-DUP-EVENT")
    assert dup is not None
    assert dup.severity is Severity.WARNING
    assert dup.count == 1
    assert dup.details["extra_rows"] == 1
    assert dup.examples == ("2",)
    assert "R-DUP-1" in dup.rule


def test_different_routes_are_not_duplicates(tmp_path: Path) -> None:
    rows = [
        a_request_row(event_reference="A"),
        a_request_row(event_reference="B", request_route_of_access="Discharge from hospital"),
    ]
    _, results = run_checks(tmp_path, rows)
    assert by_id(results, "DS-DUP-EVENT") is None


def test_one_person_with_conflicting_date_of_birth_or_gender(tmp_path: Path) -> None:
    rows = [
        a_request_row(event_reference="A"),
        an_assessment_row(event_reference="B", date_of_birth="16/06/1950"),
        a_service_row(event_reference="C", gender="Female"),
    ]
    _, results = run_checks(tmp_path, rows)
    conflict = by_id(results, "DS-PERSON-CONFLICT")
    assert conflict is not None
    assert conflict.count == 1  # one person
    assert conflict.details == {"date_of_birth": 1, "gender": 1}


def test_gender_in_another_casing_is_not_a_conflict(tmp_path: Path) -> None:
    rows = [a_request_row(event_reference="A"), a_service_row(event_reference="C", gender="MALE")]
    _, results = run_checks(tmp_path, rows)
    assert by_id(results, "DS-PERSON-CONFLICT") is None


def test_event_reference_reused_for_different_events(tmp_path: Path) -> None:
    rows = [
        a_request_row(event_reference="SAME"),
        a_request_row(event_reference="SAME", la_person_unique_identifier="SYN-PERSON-0042"),
        a_service_row(event_reference="OTHER"),
    ]
    _, results = run_checks(tmp_path, rows)
    reused = by_id(results, "DS-EVENT-REF-REUSED")
    assert reused is not None
    assert reused.count == 1
    assert reused.rule == "R-FLD-23"


def test_undetermined_rows_are_counted(tmp_path: Path) -> None:
    _, results = run_checks(tmp_path, [a_request_row(event_end_date="99/99/2024")])
    und = by_id(results, "DS-SCOPE-UNDETERMINED")
    assert und is not None
    assert und.count == 1


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    _, results = run_checks(tmp_path, [])
    empty = by_id(results, "DS-EMPTY")
    assert empty is not None
    assert empty.severity is Severity.ERROR


def _months(counts: dict[str, int], types: int = 3) -> tuple[dict[str, int], dict[str, set[str]]]:
    names = ["request", "assessment", "review", "service"][:types]
    return counts, {m: set(names) for m in counts}


def test_derived_period_covers_a_full_year() -> None:
    months = {f"{y}-{m:02d}": 20 for y, m in [(2024, m) for m in range(4, 13)] + [(2025, m) for m in range(1, 4)]}
    counts, types = _months(months)
    start, end, kept = derive_period(counts, types, stated_start=P_START, stated_end=P_END, import_date=IMPORT)
    assert (start, end) == (P_START, P_END)
    assert len(kept) == 12


def test_a_month_under_two_percent_is_dropped() -> None:
    months = {f"2024-{m:02d}": 50 for m in range(5, 13)} | {"2024-04": 3}  # 3 of 403 < 2%
    counts, types = _months(months)
    start, end, _ = derive_period(counts, types, stated_start=P_START, stated_end=P_END, import_date=IMPORT)
    assert start == date(2024, 5, 1)
    assert end == date(2024, 12, 31)


def test_a_month_with_too_few_event_types_is_dropped() -> None:
    counts = {f"2024-{m:02d}": 50 for m in range(4, 13)}
    types = {m: {"request", "assessment", "review"} for m in counts}
    types["2024-12"] = {"request"}  # fewer than (max types 3 - 1)
    start, end, _ = derive_period(counts, types, stated_start=P_START, stated_end=P_END, import_date=IMPORT)
    assert end == date(2024, 11, 30)
    assert start == P_START


def test_months_in_or_after_the_import_month_are_ignored() -> None:
    counts = {f"2024-{m:02d}": 50 for m in range(4, 13)} | {"2025-04": 500}
    types = {m: {"request"} for m in counts}
    _, end, kept = derive_period(counts, types, stated_start=P_START, stated_end=P_END, import_date=IMPORT)
    assert "2025-04" not in kept
    assert end == date(2024, 12, 31)


def test_small_files_keep_their_stated_dates() -> None:
    counts, types = _months({"2024-06": 99})
    start, end, _ = derive_period(counts, types, stated_start=P_START, stated_end=P_END, import_date=IMPORT)
    assert (start, end) == (P_START, P_END)


def test_period_check_is_an_error_when_the_data_does_not_cover_the_stated_period(tmp_path: Path) -> None:
    rows = [
        a_request_row(event_reference=f"R{i}", la_person_unique_identifier=f"P{i}", event_end_date="20/05/2024")
        for i in range(120)
    ]
    _, results = run_checks(tmp_path, rows)
    period = by_id(results, "DS-PERIOD-DERIVED")
    assert period is not None
    assert period.severity is Severity.ERROR
    assert period.details["derived_start"] == "2024-05-01"
    assert period.details["derived_end"] == "2024-05-31"


def test_partial_or_top_up_signs_against_the_previous_submission() -> None:
    previous = SubmissionProfile(
        rows=1000, people=400, event_types={"request": 500, "service": 500}, months=[f"m{i}" for i in range(12)]
    )
    current = SubmissionProfile(rows=700, people=390, event_types={"request": 700}, months=[f"m{i}" for i in range(9)])
    results = compare_with_previous(current, previous, PartialThresholds())
    ids = {r.id for r in results}
    assert ids == {"DS-PARTIAL-ROWS", "DS-PARTIAL-EVENT-TYPES", "DS-PARTIAL-MONTHS"}  # people down only 2.5%
    rows = by_id(results, "DS-PARTIAL-ROWS")
    assert rows is not None
    assert rows.count == 300
    stricter = compare_with_previous(current, previous, PartialThresholds(people_drop=0.01))
    assert "DS-PARTIAL-PEOPLE" in {r.id for r in stricter}


def test_no_previous_submission_means_no_partial_checks() -> None:
    current = SubmissionProfile(rows=1, people=1, event_types={"request": 1}, months=["2024-05"])
    assert compare_with_previous(current, None, PartialThresholds()) == []


def test_quarter_to_quarter_diff() -> None:
    previous = [
        ManifestEntry("a", "h1", False),
        ManifestEntry("b", "h2", True),  # open service, then gone
        ManifestEntry("c", "h3", False),
        ManifestEntry("d", "h4", False),
    ]
    current = [ManifestEntry("a", "h1", False), ManifestEntry("c", "h3-changed", False), ManifestEntry("e", "h5", True)]
    diff = diff_manifests(previous, current, previous_submission_id="prev")
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (1, 2, 1, 1)
    assert diff.services_vanished_open == 1
    assert diff.examples_vanished == ("b",)
    ids = {c.id for c in diff_checks(diff)}
    assert ids == {"DS-DIFF", "DS-SERVICES-VANISHED"}


def test_findings_are_summarised_by_field_and_rule(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "state")
    try:
        store.apply_many(
            [
                Incoming(validated(a_request_row(event_reference="A"), failed_fields=("Ethnicity",))),
                Incoming(validated(a_service_row(event_reference="B"), failed_fields=("Ethnicity", "Gender"))),
            ]
        )
        checker = DatasetChecker(period_start=P_START, period_end=P_END, import_date=IMPORT)
        records: list[StoredRecord] = list(store.iter_in_scope(LA_CODE, P_START, P_END))
        for r in records:
            checker.add(r)
    finally:
        store.close()
    summary = checker.record_findings()
    assert [(f.field, f.rule, f.records) for f in summary] == [("Ethnicity", "CLD002", 2), ("Gender", "CLD002", 1)]
    failures = by_id(checker.finish(), "DS-RECORD-FAILURES")
    assert failures is not None
    assert failures.count == 2


@pytest.mark.parametrize("value", [synthetic_nhs_number(0), "SYN-PERSON-0001", "15/06/1950", "LS1 4AP"])
def test_results_never_carry_personal_data(tmp_path: Path, value: str) -> None:
    rows = [
        a_request_row(event_reference="SAME"),
        a_request_row(event_reference="SAME", date_of_birth="16/06/1950"),
        a_request_row(event_reference="X"),
    ]
    checker, results = run_checks(tmp_path, rows)
    text = "".join(r.model_dump_json() for r in results) + checker.profile().model_dump_json()
    assert value not in text
