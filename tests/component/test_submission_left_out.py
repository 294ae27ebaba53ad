"""Issue 13 item 5: the submission's DQ summary says how many held records were left out of the period and why
(by reason, with counts and Event References or record keys, never a value), and ``cld submission show`` prints it.
"""

from __future__ import annotations

import json
from typing import Any

from cld_cli import cmd_submission
from tests.component import test_submission_service
from tests.component.test_submission_service import ADA, PERIOD, Harness, rows
from tests.support.builders import a_ckba_row, a_request_row, a_review_row, a_service_row

harness = test_submission_service.harness  # the same service harness (by assignment: no F811)


async def test_held_records_left_out_of_the_period_are_counted_by_reason(harness: Harness) -> None:
    for r in rows(4):
        await harness.send_record(r)
    await harness.send_record(
        a_request_row(event_reference="OPEN-1", event_end_date=None, la_person_unique_identifier="Q1")
    )
    await harness.send_record(
        a_review_row(event_reference="OPEN-2", event_end_date=None, la_person_unique_identifier="Q2")
    )
    await harness.send_record(
        a_request_row(
            event_reference="OLD-1",
            event_start_date="01/02/2024",
            event_end_date="20/02/2024",
            la_person_unique_identifier="Q3",
        )
    )
    await harness.send_record(
        a_service_row(event_reference="LATE-1", event_start_date="01/05/2025", la_person_unique_identifier="Q4")
    )
    await harness.send_record(  # a carer known by association whose only linked adult has no event in the period
        a_ckba_row(la_person_unique_identifier="C1", adult_1_linked_person_id="Q1")
    )

    resp = await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    assert resp.status_code == 201, resp.text
    sid = resp.json()["submission"]["submission_id"]
    summary = (await harness.client.get(f"/v1/submissions/{sid}")).json()["summary"]

    left = summary["left_out"]
    assert (left["held"], left["in_file"], left["left_out"]) == (9, 4, 5)
    by_reason = {g["reason"]: (g["count"], g["rule"], g["examples"]) for g in left["by_reason"]}
    assert by_reason["open_event"][:2] == (2, "R-SCOPE-2")
    assert sorted(by_reason["open_event"][2]) == ["OPEN-1", "OPEN-2"]
    assert by_reason["completed_before_period"] == (1, "R-SCOPE-1", ["OLD-1"])
    assert by_reason["started_after_period"] == (1, "R-SCOPE-1", ["LATE-1"])
    count, rule, [example] = by_reason["no_linked_adult_in_scope"]
    assert (count, rule) == (1, "R-SCOPE-10")
    assert example.startswith("key ")  # no Event Reference on such a row: the record key (a keyed hash)

    [check] = [c for c in summary["dataset_checks"] if c["id"] == "DS-LEFT-OUT"]
    assert check["count"] == 5
    assert check["severity"] == "info"
    assert check["details"]["open_event"] == 2

    text = json.dumps(summary)
    for value in ("Q1", "Q3", "C1", "Testperson", "15/06/1950"):  # person ids, names, dates of birth: never
        assert f'"{value}"' not in text

    shown = {
        "submission": (await harness.client.get(f"/v1/submissions/{sid}")).json()["submission"],
        "summary": summary,
    }
    printed = _printed(shown)
    assert "9 records held, 4 in the file, 5 left out of the period:" in printed
    assert "2 a request, assessment or review with no end date" in printed
    assert "LATE-1" in printed


async def test_nothing_left_out_is_said_too(harness: Harness) -> None:
    for r in rows(3):
        await harness.send_record(r)
    resp = await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    sid = resp.json()["submission"]["submission_id"]
    summary = (await harness.client.get(f"/v1/submissions/{sid}")).json()["summary"]
    assert summary["left_out"]["left_out"] == 0
    assert not any(c["id"] == "DS-LEFT-OUT" for c in summary["dataset_checks"])


def _printed(detail: dict[str, Any]) -> str:
    """What ``cld submission show`` prints for this detail (its own printing function, without a server)."""
    with cmd_submission.out.capture() as cap:
        cmd_submission._print_detail(detail)
    return cap.get()
