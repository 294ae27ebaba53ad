"""``cld validate`` writes the same reports as before the columnar engine, byte for byte (issue 11 item 1).

The JSON report and the HTML page as bytes, the workbook as cells, the terminal summary and the exit code, on
golden inputs of both releases (generated with injected errors, adversarial, the unit fixtures), with and without
--release (without it the release is chosen per record by its period): frozen by ``tests.golden.cli_reports``
from the reference engine before the switch.
"""

from __future__ import annotations

import json

import pytest

from tests.golden.cli_reports import CASES, load_case, run_case


@pytest.mark.parametrize("case", list(CASES))
def test_cld_validate_reports_are_byte_identical_to_the_frozen_ones(case: str) -> None:
    got = json.loads(json.dumps(run_case(case), ensure_ascii=False, default=str))
    expected = load_case(case)
    assert got["exit_code"] == expected["exit_code"]
    assert got["json"] == expected["json"]
    assert got["html"] == expected["html"]
    assert got["xlsx"] == expected["xlsx"]
    assert got["output"] == expected["output"]


def test_the_frozen_reports_hold_findings() -> None:
    report = json.loads(load_case("adversarial_r2.cli")["json"])
    assert len(report["findings"]) > 1000
    assert report["summary"]["profile"]["fields"]
    assert report["summary"]["dataset_checks"]
