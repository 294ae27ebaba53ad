"""The golden corpus (tests/golden): the engines in use reproduce, bit for bit, what was frozen.

Findings (row, field, status, validity, rule, message), summary counts, ``cld preview``'s pseudonymised file and
its risk figures. A difference is a behaviour change: if it is intended, re-freeze with
``.venv/bin/python -m tests.golden.build`` and say why in the commit; if not, the engine is wrong.

A differential property test keeps the two ways of validating a record in agreement on generated rows: the
per-record path the validation service uses (``validate_record``) and the file path ``cld validate`` uses
(``validate_stream``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cld_schemas.spec import Release, load_spec
from cld_validation.report import validate_stream
from cld_validation.rules import validate_record
from tests.golden.build import (
    CORPUS,
    DATA,
    PREVIEWED,
    assert_reproduces,
    load_golden,
    preview_result,
    validation_result,
)
from tests.support.builders import a_request_row, a_service_row

SPEC = load_spec()


@pytest.mark.parametrize(("name", "release"), list(CORPUS.items()))
def test_validation_reproduces_the_golden_findings(name: str, release: Release) -> None:
    assert_reproduces(validation_result(name, release), load_golden(DATA / f"{name}.findings.json.gz"))


@pytest.mark.parametrize("name", PREVIEWED)
def test_preview_reproduces_the_golden_pseudonyms_and_risk(name: str, tmp_path: Path) -> None:
    expected = load_golden(DATA / f"{name}.preview.json.gz")
    got = preview_result(name, tmp_path)
    assert got["risk"] == expected["risk"]
    got_lines = got["pseudonymised_csv"].splitlines()
    want_lines = expected["pseudonymised_csv"].splitlines()
    assert len(got_lines) == len(want_lines)
    for n, (g, w) in enumerate(zip(got_lines, want_lines, strict=True)):
        assert g == w, f"pseudonymised.csv line {n + 1} differs"


def test_the_corpus_is_wide_enough_to_mean_something() -> None:
    rules: set[str] = set()
    validities: set[str] = set()
    for name in CORPUS:
        data = load_golden(DATA / f"{name}.findings.json.gz")
        rules.update(f[4] for f in data["findings"])
        validities.update(f[3] for f in data["findings"])
    assert len(rules) >= 40, sorted(rules)
    assert {"Failed: Invalid", "Failed: Blank (Mandatory)", "Failed: Release 1"} <= validities


# ---- differential: the per-record path and the file path agree ----

_CODED = [f for f in SPEC.file_fields if f.format == "code" and f.code_lists]
_text = st.one_of(
    st.sampled_from(["", " ", "NULL", "n/a", "31/02/2025", "01/04/2025", "2025-04-01", "9990000018", "0", "-1"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='\r\n"\x00'), max_size=12),
)


@st.composite
def _rows(draw: st.DrawFn) -> tuple[Release, dict[str, str | None]]:
    release = draw(st.sampled_from([Release.R1, Release.R2]))
    row = dict(draw(st.sampled_from([a_request_row, a_service_row]))(release))
    for f in draw(st.lists(st.sampled_from(SPEC.file_fields), max_size=6)):
        if f.format == "code" and f.code_lists and draw(st.booleans()):
            values = [v.value for cl in f.code_lists.values() for v in cl.values] or [""]
            row[f.name] = draw(st.sampled_from(values))
        else:
            row[f.name] = draw(_text)
    return release, row


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows())
def test_the_service_path_and_the_file_path_find_the_same(case: tuple[Release, dict[str, str | None]]) -> None:
    release, row = case
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow([f.header for f in SPEC.file_fields])
    w.writerow([row.get(f.name) or "" for f in SPEC.file_fields])
    from_file: list[tuple[str, str, str, str]] = []
    validate_stream(
        io.StringIO(buf.getvalue(), newline=""),
        release=release,
        la_code="318",
        sink=lambda _n, f: from_file.append((f.header, f.validity.value, f.rule, f.message)),
    )
    stripped = {k: (v.strip() or None) if isinstance(v, str) else v for k, v in row.items()}
    stripped["la_code"] = stripped.get("la_code") or "318"
    one = validate_record(stripped, release=release)
    from_record = [(f.header, f.validity.value, f.rule, f.message) for f in one.findings]
    assert from_record == from_file
