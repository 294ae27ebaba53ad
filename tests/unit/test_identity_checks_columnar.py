"""The identity checks fed frames (``FrameIdentityChecker.add_frame``, what ``cld validate`` runs) give the same
warnings, counts and order as fed row by row (``IdentityChecker.add``), whatever the frame size."""

from __future__ import annotations

import io

import polars as pl
import pytest

from cld_schemas.csvfile import iter_records
from cld_schemas.spec import load_spec
from cld_validation.identity_checks import FrameIdentityChecker, IdentityChecker
from tests.golden.build import DATA, read_gz_text

SPEC = load_spec()
NAMES = [f.name for f in sorted(SPEC.fields, key=lambda f: f.order)]


def _records() -> list[dict[str, str | None]]:
    _, rows = iter_records(io.StringIO(read_gz_text(DATA / "adversarial_r2.csv.gz"), newline=""), sparse=True)
    records = list(rows)[:1000]
    extra: list[dict[str, str | None]] = [
        {"nhs_number": "0000000000", "la_person_unique_identifier": "P-1"},  # placeholder (ID001)
        {"nhs_number": "9990000018", "la_person_unique_identifier": "P-1"},
        {"nhs_number": "9990000018", "la_person_unique_identifier": "P-2"},  # shared (ID003)
        {"nhs_number": "999 000 0018", "la_person_unique_identifier": "P-3"},  # same number, spaced
        {"nhs_number": "9990000018", "la_person_unique_identifier": "NULL"},  # placeholder person: not a person
        {"adult_1_linked_person_id": "P-404", "gender": "n/a"},  # ID004, ID005
    ]
    return records + extra


def _frame(records: list[dict[str, str | None]]) -> pl.DataFrame:
    return pl.from_dicts(records, schema=dict.fromkeys(NAMES, pl.String))


@pytest.mark.parametrize("size", [7, 500, 5000])
def test_frames_give_the_same_warnings_as_rows(size: int) -> None:
    records = _records()
    by_row = IdentityChecker(SPEC)
    for n, rec in enumerate(_frame(records).iter_rows(named=True), start=1):
        by_row.add(n, {k: v for k, v in rec.items() if v is not None})
    by_frame = FrameIdentityChecker(SPEC)
    for start in range(0, len(records), size):
        by_frame.add_frame(start, _frame(records[start : start + size]))
    expected = by_row.to_json()
    assert by_frame.to_json() == expected
    assert set(expected["warnings_by_rule"]) == {"ID001", "ID002", "ID003", "ID004", "ID005"}
