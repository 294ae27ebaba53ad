"""Injected errors and the validator agree exactly: every injected error is found at its row and field with the
expected validity (recall 100%), and nothing fails where nothing was injected (no false alarms).

This checks the generator's ground truth and the validator against each other: a kind of error the validator misses,
or a failure the generator did not mean to cause, fails here.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cld_cli import cmd_generate
from cld_schemas.spec import Release
from cld_synth import generator as synth
from cld_validation.report import validate_stream
from cld_validation.rules import FieldFinding, validate_record

PERIOD_END = date(2025, 12, 31)

Found = dict[tuple[int, str], tuple[str, str]]


Missed = dict[tuple[int, str], tuple[tuple[str, str], tuple[str, str] | None]]


def compare(expected: Found, found: Found) -> tuple[Missed, Found]:
    """Injected errors not found as expected (with what was found instead), and failures nobody injected."""
    missed: Missed = {k: (v, found.get(k)) for k, v in expected.items() if found.get(k) != v}
    extra = {k: v for k, v in found.items() if k not in expected}
    return missed, extra


@pytest.mark.parametrize("release", list(Release))
def test_every_injected_error_is_found_and_nothing_else(release: Release) -> None:
    expected: Found = {}
    found: Found = {}
    kinds: set[synth.ErrorKind] = set()
    rows = 0
    for n, (row, errors) in enumerate(
        synth.generate_rows(people=2500, seed=21, period_end=PERIOD_END, release=release, error_rate=0.25), start=1
    ):
        rows = n
        assert len({e.field for e in errors}) == len(errors), "at most one error per field per row"
        for e in errors:
            assert e.row == n
            expected[(n, e.field)] = (e.expected_validity.value, e.rule)
            kinds.add(e.kind)
        f: FieldFinding
        for f in validate_record(row, release=release).findings:
            found[(n, f.header)] = (f.validity.value, f.rule)
    missed, extra = compare(expected, found)
    assert missed == {}
    assert extra == {}
    assert 0.2 < len(expected) / rows < 0.3
    every_kind = set(synth.ErrorKind)
    if release is Release.R1:
        every_kind.discard(synth.ErrorKind.RELEASE_1_VALUE)  # only an R2 file can hold an outdated R1 value
    assert kinds == every_kind


def test_error_rate_one_puts_one_error_on_every_row() -> None:
    pairs = list(synth.generate_rows(people=300, seed=4, period_end=PERIOD_END, error_rate=1.0))
    assert all(len(errors) == 1 for _, errors in pairs)
    for row, errors in pairs:
        (e,) = errors
        failed = {(f.header, f.validity) for f in validate_record(row, release=Release.R2).findings}
        assert failed == {(e.field, e.expected_validity)}


def test_error_rate_zero_injects_nothing() -> None:
    assert not any(errors for _, errors in synth.generate_rows(people=500, seed=4, period_end=PERIOD_END))


@pytest.mark.parametrize("release", list(Release))
def test_the_written_file_and_truth_file_agree_with_cld_validation(tmp_path: Path, release: Release) -> None:
    """The same check through the file: CSV written by ``cld generate``, read back by the validation service."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Only ``generate``."""

    cmd_generate.register(app)
    out, truth = tmp_path / "cld.csv", tmp_path / "truth.csv"
    args = ["generate", "-n", "800", "--seed", "9", "--out", str(out), "--truth", str(truth)]
    args += ["--error-rate", "0.1", "--release", release.value, "--period-end", "31/12/2025"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    with truth.open(encoding="utf-8", newline="") as fh:
        expected: Found = {(int(r["row"]), r["field"]): (r["expected_validity"], r["rule"]) for r in csv.DictReader(fh)}
    found: Found = {}

    def sink(row: int, fnd: FieldFinding) -> None:
        found[(row, fnd.header)] = (fnd.validity.value, fnd.rule)

    with out.open(encoding="utf-8", newline="") as fh:
        summary = validate_stream(fh, release=release, la_code="318", sink=sink)
    assert expected, "a 10% error rate injects errors"
    missed, extra = compare(expected, found)
    assert missed == {}
    assert extra == {}
    assert summary.rows_with_failures == len({row for row, _ in expected})
