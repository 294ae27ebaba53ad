"""The analyst's DQ report page in a real headless Chromium (issue 13, item 4): the charts and the findings
table are rendered (DOM assertions) and a screenshot has content (pixels, not a blank page)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from tests.browser.browser import chromium, file_url, missing
from tests.browser.png import colour_stats
from tests.browser.report_fixture import build_report


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    page, js = build_report(tmp_path_factory.mktemp("dq"))
    return page, json.loads(js.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    problem = missing()
    if problem:
        pytest.fail(problem)  # the browser tier needs the browser: not a silent skip
    with chromium() as driver:
        yield driver


@pytest.fixture
def opened(browser: WebDriver, report: tuple[Path, dict[str, Any]]) -> WebDriver:
    browser.get(file_url(report[0]))
    assert browser.execute_script("return document.readyState") == "complete"
    return browser


def test_the_three_charts_are_drawn(opened: WebDriver, report: tuple[Path, dict[str, Any]]) -> None:
    data = report[1]
    assert data["summary"]["failures"] > 0, "the synthetic file must have failures to draw"
    by_field = opened.find_element(By.CSS_SELECTOR, "#chart-failures-by-field svg")
    bars = by_field.find_elements(By.CSS_SELECTOR, "rect.bar")
    assert len(bars) == min(30, len(data["summary"]["failures_by_field"]))
    assert all(b.rect["width"] > 0 and b.rect["height"] > 0 for b in bars)
    assert by_field.rect["width"] > 400  # laid out across a laptop screen, not collapsed

    mix = opened.find_element(By.CSS_SELECTOR, "#chart-validity-mix svg")
    segs = mix.find_elements(By.CSS_SELECTOR, "rect.seg")
    fills = {s.get_attribute("fill") for s in segs}
    assert len(fills) >= 3  # passes, blanks and failures in different colours
    months = opened.find_elements(By.CSS_SELECTOR, "#chart-failures-by-month svg rect.bar")
    dated = {k for k in data["summary"]["profile"]["failures_by_event_start_month"] if k[:1].isdigit()}
    assert len(months) == len(dated)


def test_the_findings_table_lists_every_failure(opened: WebDriver, report: tuple[Path, dict[str, Any]]) -> None:
    data = report[1]
    table = opened.find_element(By.ID, "findings-table")
    heads = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    assert heads == ["Row", "Event Reference", "Field", "Status", "Validity", "Rule", "Message", "Fix"]
    cells = opened.execute_script(
        "return Array.from(document.querySelectorAll('#findings-table tbody tr'))"
        ".map(tr => Array.from(tr.cells).map(td => td.textContent));"
    )
    got = {(int(r[0]), r[2], r[5], r[7]) for r in cells}
    want = {(f["excel_row"], f["field"], f["rule"], f["fix"]) for f in data["findings"]}
    assert got == want
    first = table.find_element(By.CSS_SELECTOR, "tbody tr")
    assert first.is_displayed()


def test_a_screenshot_has_content(opened: WebDriver) -> None:
    png = opened.get_screenshot_as_png()
    distinct, non_white, counts = colour_stats(png)
    assert distinct >= 8, "a near-uniform screenshot: the page did not render"
    assert non_white >= 0.10
    reds = sum(n for (r, g, b), n in counts.items() if r > 150 and g < 90 and b < 90)
    assert reds > 0, "no failure bar (red) visible in the first screen"
