"""A real headless Chromium (Debian's `chromium` + `chromium-driver`, installed by `make system-deps`),
driven by Selenium, for local files only."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def _find(*names: str) -> str | None:
    for n in names:
        hit = shutil.which(n)
        if hit:
            return hit
    return None


def missing() -> str | None:
    """Why the browser cannot start, or None."""
    if _find("chromium", "chromium-browser") is None:
        return "chromium is not installed: run `make system-deps` (deploy/install-system-deps.sh)"
    if _find("chromedriver") is None:
        return "chromedriver is not installed: run `make system-deps` (Debian package chromium-driver)"
    return None


@contextmanager
def chromium(width: int = 1366, height: int = 900) -> Iterator[webdriver.Chrome]:
    problem = missing()
    if problem:
        raise RuntimeError(problem)
    opts = webdriver.ChromeOptions()
    binary = _find("chromium", "chromium-browser")
    assert binary is not None
    opts.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(arg)
    driver_path = _find("chromedriver")
    assert driver_path is not None
    driver = webdriver.Chrome(options=opts, service=Service(driver_path))
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def file_url(path: Path) -> str:
    return path.resolve().as_uri()
