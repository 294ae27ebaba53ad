"""The golden submission corpus (``tests/golden/build_submission.py``): assembly and the dataset checks in use
reproduce, bit for bit, the file, checks, findings, manifest, left-out records and diff that were frozen.

A difference is a behaviour change: if it is intended, re-freeze with
``.venv/bin/python -m tests.golden.build_submission`` and say why in the commit; if not, the engine is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.golden.build import load_golden
from tests.golden.build_submission import GOLDEN, result


@pytest.fixture(scope="module")
def frozen() -> dict[str, Any]:
    return load_golden(GOLDEN)


@pytest.fixture(scope="module")
def got(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return result(Path(tmp_path_factory.mktemp("golden-submission")))


@pytest.mark.parametrize("snapshot", ["previous", "current"])
def test_the_submission_file_is_byte_identical(got: dict[str, Any], frozen: dict[str, Any], snapshot: str) -> None:
    g, f = got[snapshot]["file"], frozen[snapshot]["file"]
    got_lines, want_lines = g["text"].split("\r\n"), f["text"].split("\r\n")
    assert len(got_lines) == len(want_lines)
    for n, (a, b) in enumerate(zip(got_lines, want_lines, strict=True)):
        assert a == b, f"{snapshot} file line {n + 1} differs"
    assert g == f
    assert g["sha256"] == g["sha256_of_bytes"]  # hashed while written: the hash is that of the bytes on disk


@pytest.mark.parametrize("snapshot", ["previous", "current"])
@pytest.mark.parametrize(
    "part", ["checks", "profile", "record_findings", "row_findings", "manifest", "left_out", "left_out_check"]
)
def test_the_dataset_checks_and_findings_are_the_same(
    got: dict[str, Any], frozen: dict[str, Any], snapshot: str, part: str
) -> None:
    assert got[snapshot][part] == frozen[snapshot][part]


def test_the_quarter_to_quarter_diff_is_the_same(got: dict[str, Any], frozen: dict[str, Any]) -> None:
    assert got["diff"] == frozen["diff"]


def test_cld_validate_checks_across_rows_are_the_same(got: dict[str, Any], frozen: dict[str, Any]) -> None:
    assert got["file_checks"].keys() == frozen["file_checks"].keys()
    for name, expected in frozen["file_checks"].items():
        assert got["file_checks"][name] == expected, name


def test_the_corpus_is_wide_enough_to_mean_something(frozen: dict[str, Any]) -> None:
    fired = {c["id"] for c in frozen["current"]["checks"] if c["count"]}
    assert {"DS-DUP-EVENT", "DS-PERSON-CONFLICT", "DS-EVENT-REF-REUSED", "DS-SCOPE-UNDETERMINED"} <= fired
    assert {"DS-RECORD-FAILURES", "DS-OPT-OUT-INCLUDED"} <= fired
    assert frozen["current"]["left_out"]["left_out"] > 0
    diff = frozen["diff"]["diff"]
    assert min(diff["added"], diff["removed"], diff["changed"], diff["services_vanished_open"]) > 0
    across = {c["id"] for v in frozen["file_checks"].values() for c in v["dataset_checks"]}
    assert {"DS-OUTSIDE-PERIOD", "DS-PERIOD-UNREADABLE", "DS-DUP-EVENT"} <= across
