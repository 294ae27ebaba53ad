"""``cld validate`` without --release checks each row against the release in force for its own period.

A row whose Reporting Period End Date is readable takes that date's release; any other row the file's release
(the first row's). Each row of a mixed file gets exactly the findings it gets when validated alone against its
own release; the summary names the file's release.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from cld_schemas.spec import Release, load_spec
from cld_validation.report import validate_stream
from tests.support.builders import a_service_row

SPEC = load_spec()


def _csv(rows: list[dict[str, str | None]]) -> io.StringIO:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([f.header for f in SPEC.file_fields])
    for row in rows:
        w.writerow([row.get(f.name) or "" for f in SPEC.file_fields])
    out.seek(0)
    return out


def _findings(rows: list[dict[str, str | None]], release: Release | None) -> tuple[Any, list[tuple[int, str, str]]]:
    found: list[tuple[int, str, str]] = []
    summary = validate_stream(
        _csv(rows), release=release, la_code="318", sink=lambda n, f: found.append((n, f.header, f.rule))
    )
    return summary, found


def _r2_period(row: dict[str, str | None]) -> dict[str, str | None]:
    return {**row, "reporting_period_start_date": "01/04/2025", "reporting_period_end_date": "31/03/2026"}


def test_rows_of_a_mixed_file_are_checked_against_their_own_periods_release() -> None:
    r2_row = _r2_period(a_service_row(Release.R2, event_start_date="01/05/2025"))
    r1_row = a_service_row(Release.R1, event_start_date="01/05/2024", event_end_date="01/06/2024")
    blank_period = {**_r2_period(a_service_row(Release.R2)), "reporting_period_end_date": None}
    rows = [r2_row, r1_row, blank_period]

    summary, mixed = _findings(rows, None)

    assert summary.release is Release.R2  # the file's release: the first row's
    _, alone_r2 = _findings([r2_row], Release.R2)
    _, alone_r1 = _findings([r1_row], Release.R1)
    _, alone_blank = _findings([blank_period], Release.R2)  # no readable period: the file's release
    expected = alone_r2 + [(2, h, r) for _n, h, r in alone_r1] + [(3, h, r) for _n, h, r in alone_blank]
    assert mixed == expected
    _, r1_as_r2 = _findings([r1_row], Release.R2)
    assert r1_as_r2 != alone_r1  # the Release 1 row would fail differently against Release 2: the test can fail
