"""Issue 6 on the submission service: operators and their LAs, opt-outs, exports and their audit.

Done-when items proven here: an LA operator cannot approve (or see) another LA's submission; an opt-out-flagged
record reaches NHS England (in the file that is sent) and is excluded from an export to another recipient with a
legal basis; an export to a recipient with no legal basis is refused and audited.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker

from cld_governance.tenancy import open_registry
from cld_submission.adapters.audit_log import read_audit_log, verify_audit_log
from cld_submission.adapters.transport import FileExportTransport
from cld_submission.entrypoints.app import create_app
from cld_submission.entrypoints.settings import SubmissionSettings
from tests.component import test_submission_service as base
from tests.component.test_submission_service import (
    ADA,
    GRACE,
    OLU,
    OTHER_LA,
    PERIOD,
    TEST_ICB,
    TEST_IDENTIFIABLE,
    Harness,
    rows,
)
from tests.support.builders import LA_CODE, a_request_row, a_service_row

harness = base.harness

OPT_OUT_REF, OBJECTION_REF = "OPTOUT-1", "OBJECT-1"


def audit(h: Harness, action: str | None = None) -> list[dict[str, Any]]:
    path = h.state_dir / "audit.jsonl"
    assert verify_audit_log(path).ok
    return [e for e in read_audit_log(path) if action is None or e["action"] == action]


def parse_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


async def request(h: Harness, operator: str = GRACE) -> dict[str, Any]:
    resp = await h.client.post("/v1/submissions", json=PERIOD, headers=h.auth(operator))
    assert resp.status_code == 201, resp.text
    sub: dict[str, Any] = resp.json()["submission"]
    return sub


async def flagged_dataset(h: Harness) -> dict[str, str]:
    """Four plain records and two flagged ones; returns event id by event reference."""
    ids: dict[str, str] = {}
    for r in rows(4):
        ids[str(r["event_reference"])] = await h.send_record(r)
    ids[OPT_OUT_REF] = await h.send_record(
        a_request_row(event_reference=OPT_OUT_REF, la_person_unique_identifier="P-OPT"),
        opt_outs=("national-data-opt-out",),
    )
    ids[OBJECTION_REF] = await h.send_record(
        a_service_row(event_reference=OBJECTION_REF, la_person_unique_identifier="P-OBJ"), opt_outs=("objection",)
    )
    return ids


# ---- authentication and LA scope -------------------------------------------------------------------------


async def test_no_key_or_an_unknown_key_is_401(harness: Harness) -> None:
    sub = await request(harness)
    transport = httpx.ASGITransport(app=harness.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://submission") as anonymous:
        for method, path in (
            ("GET", "/v1/submissions"),
            ("GET", f"/v1/submissions/{sub['submission_id']}"),
            ("POST", f"/v1/submissions/{sub['submission_id']}/approve"),
        ):
            resp = await anonymous.request(method, path, json={})
            assert resp.status_code == 401, (path, resp.text)
            assert resp.headers["www-authenticate"].startswith("Bearer")
            assert "unknown_operator" in resp.json()["detail"]
        wrong = await anonymous.get("/v1/submissions", headers={"Authorization": "Bearer cldk_not-a-real-key"})
        assert wrong.status_code == 401
        basic = await anonymous.get("/v1/submissions", headers={"Authorization": f"Basic {harness.keys[GRACE]}"})
        assert basic.status_code == 401
        assert (await anonymous.get("/health")).status_code in (200, 503)  # not behind the operator key


async def test_an_la_operator_cannot_see_or_approve_another_las_submission(harness: Harness) -> None:
    for r in rows(4):
        await harness.send_record(r)
    sub = await request(harness)
    sid = sub["submission_id"]
    olu = harness.auth(OLU)

    for path in (f"/v1/submissions/{sid}", f"/v1/submissions/{sid}/status", f"/v1/submissions/{sid}/file"):
        seen = await harness.client.get(path, headers=olu)
        assert seen.status_code == 403, path
        assert seen.json()["detail"].startswith("operator_not_in_scope")
        assert LA_CODE in seen.json()["detail"]
    refused = await harness.client.post(f"/v1/submissions/{sid}/approve", json={}, headers=olu)
    assert refused.status_code == 403
    assert "operator_not_in_scope" in refused.json()["detail"]
    assert (await harness.client.get(f"/v1/submissions/{sid}/status")).json()["state"] == "checked"

    # Listings: filtered to the operator's LAs; asking for another LA by code is refused.
    assert (await harness.client.get("/v1/submissions", headers=olu)).json() == []
    assert (await harness.client.get("/v1/submissions", params={"la": LA_CODE}, headers=olu)).status_code == 403
    assert [s["submission_id"] for s in (await harness.client.get("/v1/submissions")).json()] == [sid]
    own = await harness.client.get("/v1/submissions", params={"la": OTHER_LA}, headers=olu)
    assert own.status_code == 200
    assert own.json() == []
    state = await harness.client.get(
        f"/v1/state/{LA_CODE}", params={"period_start": "2024-04-01", "period_end": "2025-03-31"}, headers=olu
    )
    assert state.status_code == 403
    # Olu cannot request for 318 either.
    asked = await harness.client.post("/v1/submissions", json=PERIOD, headers=olu)
    assert asked.status_code == 403

    denied = audit(harness, "access_denied")
    assert {e["request"] for e in denied} >= {"view", "approve_submission", "request_submission"}
    assert all(e["by"] == OLU and e["reason"] == "operator_not_in_scope" for e in denied)
    assert all(e.get("action") != "approved" for e in audit(harness))

    # The LA's own operator approves.
    ok = await harness.client.post(f"/v1/submissions/{sid}/approve", json={})
    assert ok.status_code == 200, ok.text
    assert ok.json()["approved_by"] == GRACE
    async with asyncio.timeout(10):
        await harness.workflow.join()


async def test_a_hub_operator_sees_and_requests_but_does_not_approve_or_export(harness: Harness) -> None:
    for r in rows(2):
        await harness.send_record(r)
    sub = await request(harness, ADA)
    assert sub["requested_by"] == ADA
    sid = sub["submission_id"]
    ada = harness.auth(ADA)
    assert (await harness.client.get(f"/v1/submissions/{sid}", headers=ada)).status_code == 200
    approve = await harness.client.post(f"/v1/submissions/{sid}/approve", json={}, headers=ada)
    assert approve.status_code == 403
    assert approve.json()["detail"].startswith("action_not_permitted")
    export = await harness.client.post(f"/v1/submissions/{sid}/exports", json={"recipient": TEST_ICB}, headers=ada)
    assert export.status_code == 403
    assert export.json()["detail"].startswith("action_not_permitted")


async def test_the_approver_and_requester_are_the_authenticated_operator(harness: Harness) -> None:
    for r in rows(2):
        await harness.send_record(r)
    impostor = await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": "Someone Else"})
    assert impostor.status_code == 403
    assert "operator_mismatch" in impostor.json()["detail"]
    sid = (await request(harness))["submission_id"]
    other_name = await harness.client.post(f"/v1/submissions/{sid}/approve", json={"by": ADA})
    assert other_name.status_code == 403
    assert "operator_mismatch" in other_name.json()["detail"]
    assert (await harness.client.get(f"/v1/submissions/{sid}/status")).json()["state"] == "checked"
    same_name = await harness.client.post(f"/v1/submissions/{sid}/approve", json={"by": GRACE})  # compatible
    assert same_name.status_code == 200
    assert same_name.json()["approved_by"] == GRACE
    async with asyncio.timeout(10):
        await harness.workflow.join()
    approved = audit(harness, "approved")
    assert [e["by"] for e in approved] == [GRACE]


# ---- opt-outs: NHS England gets them, other recipients do not --------------------------------------------


async def test_an_opt_out_flagged_record_reaches_nhs_england_and_is_excluded_from_an_export(harness: Harness) -> None:
    ids = await flagged_dataset(harness)
    for ref, event_id in ids.items():  # a pseudonymisation instance for this recipient has processed them
        await harness.send_pseudonymised(
            event_id,
            {"person_pseudonym": f"pp-{ref}", "event_pseudonym": f"ep-{ref}", "age_band": "65-74"},
            purpose=TEST_ICB,
        )
    sub = await request(harness)
    sid = sub["submission_id"]
    assert sub["rows"] == 6
    summary = (await harness.client.get(f"/v1/submissions/{sid}")).json()["summary"]
    assert summary["opt_out_rows"] == 2
    assert "DS-OPT-OUT-INCLUDED" in {c["id"] for c in summary["dataset_checks"]}

    # NHS England: the file that is SENT holds the flagged records (the opt-out does not apply, by law).
    assert (await harness.client.post(f"/v1/submissions/{sid}/approve", json={})).status_code == 200
    async with asyncio.timeout(10):
        await harness.workflow.join()
    assert (await harness.client.get(f"/v1/submissions/{sid}/status")).json()["state"] == "sent"
    sent = parse_csv((harness.export_dir / sub["file_name"]).read_bytes())
    sent_refs = {r["Event Reference"] for r in sent}
    assert {OPT_OUT_REF, OBJECTION_REF} <= sent_refs
    assert len(sent) == 6

    # Another recipient with a legal basis: flagged records left out, pseudonymised form.
    resp = await harness.client.post(f"/v1/submissions/{sid}/exports", json={"recipient": TEST_ICB})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-export-form"] == "pseudonymised"
    assert resp.headers["x-records-included"] == "4"
    assert resp.headers["x-records-excluded-opt-out"] == "2"
    assert hashlib.sha256(resp.content).hexdigest() == resp.headers["x-content-sha256"]
    exported = parse_csv(resp.content)
    assert len(exported) == 4
    assert set(exported[0]) == {"person_pseudonym", "event_pseudonym", "age_band"}
    got = {r["event_pseudonym"] for r in exported}
    assert got == {f"ep-{ref}" for ref in ids if ref not in (OPT_OUT_REF, OBJECTION_REF)}
    assert b"P-OPT" not in resp.content
    assert b"P-OBJ" not in resp.content
    assert not list((harness.state_dir / "exports-outgoing").glob("*.csv"))  # no copy kept

    [entry] = audit(harness, "exported")
    assert entry["by"] == GRACE
    assert entry["recipient_id"] == TEST_ICB
    assert entry["legal_basis"].startswith("A data sharing agreement")
    assert entry["instruments"] == ["Test data sharing agreement 2025"]
    assert entry["form"] == "pseudonymised"
    assert entry["opt_outs_applied"] is True
    assert (entry["records_considered"], entry["records_included"], entry["records_excluded_opt_out"]) == (6, 4, 2)
    assert entry["file_sha256"] == resp.headers["x-content-sha256"]
    assert entry["submission_id"] == sid
    assert "P-OPT" not in (harness.state_dir / "audit.jsonl").read_text()


async def test_an_export_to_a_recipient_with_no_legal_basis_is_refused_and_audited(harness: Harness) -> None:
    await flagged_dataset(harness)
    sid = (await request(harness))["submission_id"]
    resp = await harness.client.post(f"/v1/submissions/{sid}/exports", json={"recipient": "example-icb"})
    assert resp.status_code == 403
    assert resp.json()["detail"].startswith("no_legal_basis")
    assert "content-disposition" not in resp.headers
    [entry] = audit(harness, "export_refused")
    assert entry["decision"] == "refused"
    assert entry["reason"] == "no_legal_basis"
    assert entry["by"] == GRACE
    assert entry["recipient_id"] == "example-icb"
    assert entry["la_code"] == LA_CODE
    assert entry["records_included"] == 0
    assert audit(harness, "exported") == []

    unknown = await harness.client.post(f"/v1/submissions/{sid}/exports", json={"recipient": "nobody-known"})
    assert unknown.status_code == 403
    assert unknown.json()["detail"].startswith("unknown_recipient")
    assert len(audit(harness, "export_refused")) == 2


async def test_the_identifiable_form_only_where_the_policy_permits_it(harness: Harness) -> None:
    await flagged_dataset(harness)
    sub = await request(harness)
    sid = sub["submission_id"]
    asked = await harness.client.post(
        f"/v1/submissions/{sid}/exports", json={"recipient": TEST_ICB, "form": "identifiable"}
    )
    assert asked.status_code == 403
    assert asked.json()["detail"].startswith("form_not_permitted")

    permitted = await harness.client.post(f"/v1/submissions/{sid}/exports", json={"recipient": TEST_IDENTIFIABLE})
    assert permitted.status_code == 200, permitted.text
    assert permitted.headers["x-export-form"] == "identifiable"
    refs = {r["Event Reference"] for r in parse_csv(permitted.content)}
    assert len(refs) == 4
    assert not refs & {OPT_OUT_REF, OBJECTION_REF}  # opt-outs apply to this recipient too
    file_rows = parse_csv((await harness.client.get(f"/v1/submissions/{sid}/file")).content)
    assert refs == {r["Event Reference"] for r in file_rows} - {OPT_OUT_REF, OBJECTION_REF}


async def test_no_export_without_the_recipients_pseudonymised_form(harness: Harness) -> None:
    ids = await flagged_dataset(harness)
    some = next(iter(ids.items()))
    # Pseudonymised for another purpose (the NHS England preview) or only partly: not used, nothing exported.
    for ref, event_id in ids.items():
        await harness.send_pseudonymised(event_id, {"person_pseudonym": ref}, purpose="nhs-england-preview")
    await harness.send_pseudonymised(some[1], {"person_pseudonym": "x"}, purpose=TEST_ICB)
    sid = (await request(harness))["submission_id"]
    resp = await harness.client.post(f"/v1/submissions/{sid}/exports", json={"recipient": TEST_ICB})
    assert resp.status_code == 409
    assert "no pseudonymised form" in resp.json()["detail"]
    [entry] = audit(harness, "export_unavailable")
    assert entry["recipient_id"] == TEST_ICB
    assert entry["by"] == GRACE
    assert audit(harness, "exported") == []


async def test_nhs_england_is_not_an_export_recipient(harness: Harness) -> None:
    await flagged_dataset(harness)
    sid = (await request(harness))["submission_id"]
    resp = await harness.client.post(f"/v1/submissions/{sid}/exports", json={"recipient": "nhs-england"})
    assert resp.status_code == 422
    assert "approve" in resp.json()["detail"]


# ---- open mode ------------------------------------------------------------------------------------------


async def test_open_mode_keeps_the_unauthenticated_api_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = SubmissionSettings(
        kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING", state_dir=tmp_path / "state"
    )
    app = create_app(settings, transport=FileExportTransport(tmp_path / "export"), tenants=open_registry())
    assert "TENANCY OPEN MODE" in capsys.readouterr().err  # JSON log lines on stderr
    async with TestKafkaBroker(app.state.broker), app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://submission") as client:
            unnamed = await client.post("/v1/submissions", json=PERIOD)
            assert unnamed.status_code == 422  # in open mode the body names who asks
            resp = await client.post("/v1/submissions", json={**PERIOD, "requested_by": "Demo User"})
            assert resp.status_code == 201
            assert resp.json()["submission"]["requested_by"] == "Demo User"
            assert len((await client.get("/v1/submissions")).json()) == 1
