"""Write docs/images/dq-report.png: the DQ report page of a synthetic file, in a real headless Chromium.

.venv/bin/python -m tests.browser.screenshot docs/images/dq-report.png     (or: make dq-report-png)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.browser.browser import chromium, file_url
from tests.browser.report_fixture import build_report


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "docs/images/dq-report.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cld-dq-shot-") as tmp:
        page, _ = build_report(Path(tmp))
        with chromium(width=1280, height=1400) as driver:
            driver.get(file_url(page))
            png = driver.get_screenshot_as_png()
    out.write_bytes(png)
    print(f"wrote {out} ({len(png):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
