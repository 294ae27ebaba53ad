"""Issue 13 item 9: ``cld submission show`` fits an 80-column terminal. A typical submission (failures, left-out
records, dataset checks, a previous sent submission to compare with) is shown by the CLI runner at COLUMNS=80:
no line is wider than 80 characters and the key facts are there, whole (the SHA-256 on one line)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from cld_cli import cmd_submission
from tests.component import test_submission_report, test_submission_service
from tests.component.test_submission_report import a_submission_with_failures, send_validated
from tests.component.test_submission_service import ADA, GRACE, PERIOD, Harness
from tests.support.builders import a_request_row

harness = test_submission_service.harness  # the same service harness (by assignment: no F811)
_ = test_submission_report  # its helpers build the submission


_REAL_CLIENT: Callable[..., httpx.Client] = httpx.Client


def cli() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """Test root."""

    cmd_submission.register(root)
    return root


def show_at(columns: int, detail: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    """`cld submission show ID` against a service answering ``detail``, in a terminal ``columns`` wide."""
    real = _REAL_CLIENT

    def client(*args: Any, **kwargs: Any) -> httpx.Client:
        return real(*args, transport=httpx.MockTransport(lambda _r: httpx.Response(200, json=detail)), **kwargs)

    monkeypatch.setattr(httpx, "Client", client)
    sid = detail["submission"]["submission_id"]
    result = CliRunner().invoke(
        cli(), ["submission", "show", sid], env={"COLUMNS": str(columns), "CLD_OPERATOR_KEY": "k"}
    )
    assert result.exit_code == 0, result.output
    return result.output


async def test_show_fits_80_columns_with_the_key_facts(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    first, _ = await a_submission_with_failures(harness)
    approved = await harness.client.post(f"/v1/submissions/{first}/approve", json={"by": GRACE, "accept_errors": True})
    assert approved.status_code == 200, approved.text
    async with asyncio.timeout(10):
        await harness.workflow.join()  # sent: the next submission compares with it
    await send_validated(harness, a_request_row(event_reference="NEW-1", la_person_unique_identifier="P-NEW"))
    resp = await harness.client.post("/v1/submissions", json={**PERIOD, "requested_by": ADA}, headers=harness.auth(ADA))
    assert resp.status_code in (200, 201), resp.text
    sid = resp.json()["submission"]["submission_id"]
    detail = (await harness.client.get(f"/v1/submissions/{sid}", headers=harness.auth(GRACE))).json()
    summary = detail["summary"]
    assert summary["record_findings"], "a typical submission has failures"
    assert summary["left_out"]["left_out"] >= 1
    assert summary["diff"] is not None

    text = show_at(80, detail, monkeypatch)

    lines = text.splitlines()
    too_wide = [(len(line), line) for line in lines if len(line) > 80]
    assert not too_wide, too_wide
    flat = " ".join(" ".join(lines).split())
    assert sid in flat
    assert detail["submission"]["state"] in flat
    assert f"File SHA-256: {summary['file_sha256']}" in text  # whole, on one line
    assert f"{summary['rows']} rows, {summary['rows_with_failures']} with record-level failures" in flat
    for check in summary["dataset_checks"]:
        assert f"{check['id']} ({check['rule']}): {check['count']}" in flat
    left = summary["left_out"]
    assert f"{left['held']} records held, {left['in_file']} in the file, {left['left_out']} left out" in flat
    assert "OPEN-1" in flat
    for f in summary["record_findings"]:
        assert f["rule"] in flat
    assert f"cld submission report {sid}" in flat


async def test_show_uses_a_wider_terminal_without_breaking_lines(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid, _ = await a_submission_with_failures(harness)
    detail = (await harness.client.get(f"/v1/submissions/{sid}")).json()
    narrow = show_at(80, detail, monkeypatch).splitlines()
    wide = show_at(100, detail, monkeypatch).splitlines()
    assert max(len(line) for line in wide) <= 100
    assert len(wide) < len(narrow)  # fewer wrapped lines when there is room
