"""Issue 13 item 9: ``GET /v1/submissions/{id}/report`` serves the submission's DQ report page (the renderer of
``cld validate --html``) to its operators: operator key, LA scope, every failure of the submission's rows with
its rule and its row as Excel shows it, the dataset checks and left-out records, no personal value, no URL."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from contextlib import closing
from html.parser import HTMLParser

from cld_schemas import topics
from cld_schemas.events import Finding, Provenance, RecordValidated
from cld_schemas.spec import Release
from cld_submission.adapters.sqlite_repository import DB_NAME
from cld_validation.rules import validate_record
from tests.component import test_submission_service
from tests.component.test_submission_service import ADA, OLU, PERIOD, T0, Harness
from tests.support.builders import LA_CODE, Row, a_request_row, a_service_row

harness = test_submission_service.harness  # the same service harness (by assignment: no F811)

# Synthetic personal values (NHS numbers from the 999 test range) that must never reach the page.
PERSONAL = {
    "nhs_number": "9990001234",  # wrong check digit: a finding on a personal field
    "first_name": "Zebedee",
    "last_name": "Quixotic",
    "date_of_birth": "1950-06-15",  # not dd/mm/yyyy: a finding on a personal field
    "postcode": "ZZ99 3WX",
    "la_person_unique_identifier": "PERSON-SECRET-77",
}


class _Table(HTMLParser):
    """The cells of one table (by id) of a page."""

    def __init__(self, ident: str) -> None:
        super().__init__()
        self.ident, self.inside, self.rows, self.cell = ident, False, [], None
        self.row: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and dict(attrs).get("id") == self.ident:
            self.inside = True
        elif self.inside and tag == "tr":
            self.row = []
        elif self.inside and tag == "td":
            self.cell = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.inside:
            self.inside = False
        elif self.inside and tag == "td" and self.cell is not None:
            self.row.append(self.cell)
            self.cell = None
        elif self.inside and tag == "tr" and self.row:
            self.rows.append(self.row)

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell += data


def table(page: str, ident: str) -> list[list[str]]:
    parser = _Table(ident)
    parser.feed(page)
    return parser.rows


async def send_validated(harness: Harness, row: Row) -> list[Finding]:
    """Validate ``row`` as the validation service does (Release 1: the period 2024/25) and publish it."""
    harness.seq += 1
    result = validate_record(row, release=Release.R1)
    findings = [
        Finding(field=f.header, status=f.status, validity=f.validity, rule=f.rule, message=f.message, fix=f.fix)
        for f in result.findings
    ]
    event = RecordValidated(
        la_code=LA_CODE,
        release=Release.R1,
        provenance=Provenance(source="case-system", event_id=f"ev-{harness.seq}", received_at=T0),
        record=row,
        findings=findings,
        failed=bool(findings),
        validated_at=T0,
    )
    await harness.broker.publish(event.model_dump(mode="json"), topics.VALIDATED, key=LA_CODE.encode())
    return findings


async def a_submission_with_failures(harness: Harness) -> tuple[str, dict[str, list[Finding]]]:
    sent: dict[str, list[Finding]] = {}
    for i in range(3):  # clean rows
        sent[f"OK{i}"] = await send_validated(
            harness, a_service_row(event_reference=f"OK{i}", la_person_unique_identifier=f"P{i}")
        )
    sent["BAD1"] = await send_validated(harness, a_request_row(event_reference="BAD1", **PERSONAL))
    sent["BAD2"] = await send_validated(
        harness, a_service_row(event_reference="BAD2", gender="female", la_person_unique_identifier="P9")
    )
    await send_validated(harness, a_request_row(event_reference="OPEN-1", event_end_date=None))  # left out
    resp = await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    assert resp.status_code == 201, resp.text
    return resp.json()["submission"]["submission_id"], sent


async def test_the_page_lists_every_failure_with_its_excel_row_and_rule(harness: Harness) -> None:
    sid, sent = await a_submission_with_failures(harness)
    assert sent["BAD1"], "the row was meant to fail"
    assert sent["BAD2"], "the row was meant to fail"
    assert not any(sent[f"OK{i}"] for i in range(3))

    resp = await harness.client.get(f"/v1/submissions/{sid}/report")

    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    page = resp.text
    # the Excel row of each reference: its line in the submission's own file (the header is row 1)
    file_rows = list(csv.DictReader(io.StringIO((await harness.client.get(f"/v1/submissions/{sid}/file")).text)))
    excel_row = {r["Event Reference"]: i + 2 for i, r in enumerate(file_rows)}
    listed = {(r[0], r[1], r[2], r[5]) for r in table(page, "findings-table")}
    expected = {(str(excel_row[ref]), ref, f.field, f.rule) for ref in ("BAD1", "BAD2") for f in sent[ref]}
    assert listed == expected
    fields = {f.field for f in sent["BAD1"] + sent["BAD2"]}
    assert {"NHS Number", "Date of Birth", "Gender"} <= fields
    assert "female" not in {r[2] for r in table(page, "findings-table")}  # a field name, never the value
    # the dataset checks and the left-out record
    checks = {r[1] for r in table(page, "dataset-checks-table")}
    assert {"DS-RECORD-FAILURES", "DS-LEFT-OUT"} <= checks
    [left] = table(page, "left-out-table")
    assert left[0] == "open_event"
    assert "OPEN-1" in left[4]
    assert {r[0] for r in table(page, "record-findings-table")} == fields


async def test_no_personal_value_and_no_external_url(harness: Harness) -> None:
    sid, _ = await a_submission_with_failures(harness)
    page = (await harness.client.get(f"/v1/submissions/{sid}/report")).text
    for value in PERSONAL.values():
        assert value not in page
    assert "15/06/1950" not in page
    assert not re.search(r"(?:src|href)\s*=", page, re.IGNORECASE)  # nothing loaded: no script, no link
    assert not re.search(r"https?://", page.replace("http://www.w3.org/2000/svg", ""))
    assert "<script" not in page.lower()


async def test_auth_scope_and_unknown_id(harness: Harness) -> None:
    sid, _ = await a_submission_with_failures(harness)
    url = f"/v1/submissions/{sid}/report"
    no_key = await harness.client.get(url, headers={"Authorization": ""})
    assert no_key.status_code == 401
    bad_key = await harness.client.get(url, headers={"Authorization": "Bearer not-a-key"})
    assert bad_key.status_code == 401
    out_of_scope = await harness.client.get(url, headers=harness.auth(OLU))  # LA operator of 319 only
    assert out_of_scope.status_code == 403
    assert "<html" not in out_of_scope.text  # the reason, not the page
    hub = await harness.client.get(url, headers=harness.auth(ADA))  # a hub operator of 318 may view
    assert hub.status_code == 200
    unknown = await harness.client.get("/v1/submissions/no-such-id/report")
    assert unknown.status_code == 404


async def test_a_clean_submission_says_it_passes(harness: Harness) -> None:
    await send_validated(harness, a_service_row(event_reference="OK1", la_person_unique_identifier="P1"))
    resp = await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    sid = resp.json()["submission"]["submission_id"]
    page = (await harness.client.get(f"/v1/submissions/{sid}/report")).text
    assert table(page, "findings-table") == []
    assert "No failed field" in page


async def test_a_submission_assembled_before_rows_were_kept_shows_the_counts(harness: Harness) -> None:
    sid, sent = await a_submission_with_failures(harness)
    wf = harness.workflow
    old = wf.summary(sid).model_copy(update={"row_findings_kept": False})
    wf.repo.put_summary(sid, old.model_dump_json(exclude={"row_findings_kept"}))  # as an older version wrote it
    with closing(sqlite3.connect(harness.state_dir / DB_NAME)) as conn, conn:  # and no row was kept
        conn.execute("DELETE FROM row_findings WHERE submission_id = ?", (sid,))

    page = (await harness.client.get(f"/v1/submissions/{sid}/report")).text

    assert "assembled before each row" in page
    counted = {(r[0], r[1]): int(r[3]) for r in table(page, "record-findings-table")}
    assert counted == {(f.field, f.rule): 1 for ref in ("BAD1", "BAD2") for f in sent[ref]}


async def test_each_failure_carries_the_fix_the_validation_service_sent(harness: Harness) -> None:
    sid, sent = await a_submission_with_failures(harness)
    page = (await harness.client.get(f"/v1/submissions/{sid}/report")).text
    fixes = {(r[1], r[2]): r[7] for r in table(page, "findings-table")}
    for ref in ("BAD1", "BAD2"):
        for f in sent[ref]:
            assert f.fix, (ref, f.field)
            assert fixes[(ref, f.field)] == f.fix
    assert "'Female'" in fixes[("BAD2", "Gender")]  # a coded, non-personal value may be named in a fix
    for value in PERSONAL.values():
        assert all(value not in fix for fix in fixes.values())
