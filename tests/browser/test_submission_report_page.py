"""A submission's DQ report page (``GET /v1/submissions/{id}/report``, issue 13 item 9) in a real headless
Chromium: the submission service (in memory, as in the component tier) assembles a submission with failures, the
page is fetched with an operator key, saved as an operator's browser would save it, and opened from the file
(Selenium cannot send the operator's Authorization header; the page needs nothing else: no URL, no script)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from tests.browser.browser import chromium, file_url, missing
from tests.browser.png import colour_stats
from tests.component import test_submission_service
from tests.component.test_submission_report import PERSONAL, a_submission_with_failures
from tests.component.test_submission_service import GRACE, Harness

harness = test_submission_service.harness  # the in-memory submission service (by assignment: no F811)


async def test_a_submission_report_opens_in_chromium(harness: Harness, tmp_path: Path) -> None:
    problem = missing()
    if problem:
        pytest.fail(problem)  # the browser tier needs the browser: not a silent skip
    sid, sent = await a_submission_with_failures(harness)
    resp = await harness.client.get(f"/v1/submissions/{sid}/report", headers=harness.auth(GRACE))
    assert resp.status_code == 200, resp.text
    page = tmp_path / "submission-report.html"
    page.write_bytes(resp.content)
    file_rows = list(csv.DictReader(io.StringIO((await harness.client.get(f"/v1/submissions/{sid}/file")).text)))
    excel_row = {r["Event Reference"]: i + 2 for i, r in enumerate(file_rows)}
    want = {(excel_row[ref], ref, f.field, f.rule) for ref in ("BAD1", "BAD2") for f in sent[ref]}

    with chromium() as driver:
        driver.get(file_url(page))
        assert driver.execute_script("return document.readyState") == "complete"
        assert sid in driver.find_element(By.TAG_NAME, "header").text
        cells = driver.execute_script(
            "return Array.from(document.querySelectorAll('#findings-table tbody tr'))"
            ".map(tr => Array.from(tr.cells).map(td => td.textContent));"
        )
        assert {(int(r[0]), r[1], r[2], r[5]) for r in cells} == want
        bars = driver.find_elements(By.CSS_SELECTOR, "#chart-failures-by-field svg rect.bar")
        assert len(bars) == len({f.field for ref in ("BAD1", "BAD2") for f in sent[ref]})
        assert all(b.rect["width"] > 0 and b.rect["height"] > 0 for b in bars)
        checks = driver.find_element(By.ID, "dataset-checks-table").text
        assert "DS-LEFT-OUT" in checks
        assert "OPEN-1" in driver.find_element(By.ID, "left-out-table").text
        body = driver.find_element(By.TAG_NAME, "body").text
        for value in PERSONAL.values():
            assert value not in body
        # nothing was fetched from anywhere: the only resource is the page itself
        resources = driver.execute_script("return performance.getEntriesByType('resource').length")
        assert resources == 0
        png = driver.get_screenshot_as_png()
    distinct, non_white, counts = colour_stats(png)
    assert distinct >= 8, "a near-uniform screenshot: the page did not render"
    assert non_white >= 0.05
    blue = sum(n for (r, g, b), n in counts.items() if b > 150 and r < 60)  # the NHS-blue header band
    assert blue > 0
