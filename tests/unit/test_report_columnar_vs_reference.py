"""``report.validate_stream`` (the columnar file path ``cld validate`` runs) against the per-row reference
(``reference.validate_stream``) on the golden inputs, at several frame sizes: the same findings with their fixes
and Excel rows, and the same summary (counts, unchecked values, DQ profile) in the same order, so the frozen
reports hold whatever the frame size."""

from __future__ import annotations

import io
from typing import Any

import pytest

from cld_schemas.spec import Release, load_spec
from cld_validation import reference, report
from tests.golden.build import CORPUS, DATA, PREVIEW_TENANT, read_gz_text

SPEC = load_spec()


def _run(fn: Any, name: str, release: Release | None, **kwargs: Any) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    found: list[tuple[Any, ...]] = []

    def sink(n: int, line: int, ref: str | None, f: Any) -> None:
        found.append((n, line, ref, f.name, f.header, f.status, f.validity, f.rule, f.message, f.fix))

    text = io.StringIO(read_gz_text(DATA / f"{name}.csv.gz"), newline="")
    summary = fn(text, release=release, la_code=PREVIEW_TENANT, located_sink=sink, **kwargs)
    return summary.to_json(SPEC), found


@pytest.mark.parametrize("batch_size", [97, 1000])
@pytest.mark.parametrize(("name", "release"), [*CORPUS.items(), ("generated_r2", None), ("adversarial_r1", None)])
def test_the_columnar_file_path_equals_the_reference(name: str, release: Release | None, batch_size: int) -> None:
    want_summary, want = _run(reference.validate_stream, name, release)
    got_summary, got = _run(report.validate_stream, name, release, batch_size=batch_size)
    assert got == want
    assert list(got_summary.items()) == list(want_summary.items())  # key order too: the JSON is compared as bytes
    assert got_summary == want_summary
    assert want or name.startswith("fixtures")  # the others have findings: the comparison can fail
    assert want_summary["profile"]["fields"]
