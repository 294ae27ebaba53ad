"""The columnar engine (cld_validation.columnar) reproduces the golden corpus bit for bit (issue 11 item 1).

Every golden input goes through ``validate_stream_columnar``; the findings (row, field header, status, validity,
rule, message) in order, the unchecked counts per field, the ragged-row counts and the summary counts must equal
what the reference engine froze in tests/golden/data.
"""

from __future__ import annotations

import io
from typing import Any

import polars as pl
import pytest

from cld_schemas.spec import Release, load_spec
from cld_validation.columnar import validate_stream_columnar
from tests.golden.build import CORPUS, DATA, PREVIEW_TENANT, assert_reproduces, load_golden, read_gz_text


def columnar_result(name: str, release: Release, *, batch_size: int = 1000) -> dict[str, Any]:
    """The same shape as ``tests.golden.build.validation_result``, from the columnar engine."""
    frames: list[pl.DataFrame] = []
    text = io.StringIO(read_gz_text(DATA / f"{name}.csv.gz"), newline="")
    summary = validate_stream_columnar(
        text, release=release, sink=frames.append, la_code=PREVIEW_TENANT, batch_size=batch_size
    )
    findings: list[list[Any]] = []
    for f in frames:
        findings += [list(r) for r in f.select("row", "header", "status", "validity", "rule", "message").iter_rows()]
    return {
        "rows": summary.rows,
        "rows_with_failures": summary.rows_with_failures,
        "failures": summary.failures,
        "unchecked": dict(sorted(summary.unchecked.items())),
        "ragged": [summary.short_rows, summary.long_rows, list(summary.ragged_lines)],
        "failures_by_field_and_rule": [
            {"field": f, "rule": r, "validity": v, "count": n} for (f, r, v), n in summary.by_field_rule.most_common()
        ],
        "findings": findings,
    }


@pytest.mark.parametrize(("name", "release"), list(CORPUS.items()))
def test_columnar_engine_reproduces_the_golden_findings(name: str, release: Release) -> None:
    assert_reproduces(columnar_result(name, release), load_golden(DATA / f"{name}.findings.json.gz"))


def test_the_golden_corpus_holds_findings_to_compare() -> None:
    total = sum(len(load_golden(DATA / f"{n}.findings.json.gz")["findings"]) for n in CORPUS)
    assert total > 1000
    assert load_spec().rules  # the catalogue the corpus exercises
