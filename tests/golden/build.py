"""Freeze what today's engines produce on a wide corpus, so a rewritten engine can be held to it (issue 11).

Run once from the repository root (``.venv/bin/python -m tests.golden.build``) with the engine whose behaviour is
the reference; it writes, under ``tests/golden/data/``:

- the inputs (gzip CSV): generated files of both releases with injected errors, an adversarial file (case,
  whitespace, Unicode digits and letters, impossible dates, over-long values, ragged rows, literal NULLs) and the
  unit tests' row builders' fixtures;
- per input, the validation findings (row, field, status, validity, rule, message) and the summary counts;
- for the Release 2 and adversarial inputs, ``cld preview``'s pseudonymised file and risk figures under a fixed
  synthetic key.

``tests/unit/test_golden.py`` checks the engines in use reproduce these bit for bit. Inputs are stored rather
than regenerated so a change to the synthetic generator cannot move the goalposts. Everything is synthetic:
NHS numbers only from the 999 test range.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from cld_schemas.spec import Release, load_spec

DATA = Path(__file__).resolve().parent / "data"
SEED = 20261203
PREVIEW_KEY_HEX = "5eed" * 16
"""A fixed, made-up 32-byte key: the pseudonyms are reproducible, and mean nothing outside this corpus."""
PREVIEW_TENANT = "318"

CORPUS: dict[str, Release] = {
    "generated_r1": Release.R1,
    "generated_r2": Release.R2,
    "adversarial_r1": Release.R1,
    "adversarial_r2": Release.R2,
    "fixtures_r1": Release.R1,
    "fixtures_r2": Release.R2,
}
PREVIEWED = ("generated_r2", "adversarial_r2")


def headers() -> list[str]:
    return [f.header for f in load_spec().file_fields]


def _row_cells(row: dict[str, str | None]) -> list[str]:
    spec = load_spec()
    return [row.get(f.name) or "" for f in spec.file_fields]


def generated(release: Release, *, people: int, seed: int) -> Iterator[list[str]]:
    from cld_synth.generator import generate_rows

    for row, _ in generate_rows(
        people=people, seed=seed, period_end=date(2026, 3, 31), release=release, error_rate=0.03
    ):
        yield _row_cells(row)


_UNICODE_DIGITS = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
_CYRILLIC = str.maketrans("aeopcxAEOPCX", "аеорсхАЕОРСХ")


def _mutate(value: str, rnd: random.Random) -> str:
    kind = rnd.randrange(16)
    if kind == 0:
        return value.upper()
    if kind == 1:
        return value.lower()
    if kind == 2:
        return f"  {value} "
    if kind == 3:
        return f"\u00a0{value}"
    if kind == 4:
        return value.translate(_UNICODE_DIGITS)
    if kind == 5:
        return value.translate(_FULLWIDTH)
    if kind == 6:
        return value.translate(_CYRILLIC)
    if kind == 7:
        return rnd.choice(["31/02/2025", "00/01/2025", "2025-13-01", "29/02/2025", "32/12/2024", "1/1/25"])
    if kind == 8:
        return value * 40 if value else "x" * 300
    if kind == 9:
        return rnd.choice(["NULL", "N/A", "null", "-", "0", "?"])
    if kind == 10:
        return rnd.choice(["-1", "1e3", "12.345", "1,000", "£12.50", "NaN", "inf", "00012"])
    if kind == 11:
        return ""
    if kind == 12:
        return value.title()
    if kind == 13:
        return value.replace(" ", "  ")
    if kind == 14:
        return value + "\t"
    return value[: max(1, len(value) // 2)]


def adversarial(release: Release, *, rows: int, seed: int) -> Iterator[list[str]]:
    rnd = random.Random(seed)
    base = list(generated(release, people=rows // 2, seed=seed))
    width = len(headers())
    for n in range(rows):
        cells = list(base[n % len(base)])
        for _ in range(rnd.randint(1, 4)):
            i = rnd.randrange(width)
            cells[i] = _mutate(cells[i], rnd)
        shape = rnd.randrange(40)
        if shape == 0:
            cells = cells[: rnd.randrange(1, width)]  # short row
        elif shape == 1:
            cells = [*cells, "extra", "cells"]  # long row
        yield cells


def fixtures(release: Release) -> Iterator[list[str]]:
    from tests.support import builders

    makers = [
        builders.a_request_row,
        builders.a_service_row,
        *(getattr(builders, name) for name in dir(builders) if name.startswith("a_") and name.endswith("_row")),
    ]
    seen: set[str] = set()
    for make in makers:
        if make.__name__ in seen:
            continue
        seen.add(make.__name__)
        try:
            row = make(release)
        except TypeError:
            continue
        yield _row_cells(row)


def write_gz_csv(path: Path, rows: Iterator[list[str]]) -> int:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(headers())
    n = 0
    for cells in rows:
        w.writerow(cells)
        n += 1
    path.write_bytes(gzip.compress(buf.getvalue().encode("utf-8"), mtime=0))
    return n


def read_gz_text(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode("utf-8")


def load_golden(path: Path) -> dict[str, Any]:
    """A frozen result (gzip JSON) of this corpus."""
    data: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
    return data


def assert_reproduces(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """``got`` (a :func:`validation_result`-shaped dict from any engine) equals the golden ``expected``; a
    difference names the first finding that differs."""
    got = json.loads(json.dumps(got, ensure_ascii=False))  # tuples -> lists, as the frozen JSON has them
    assert got["rows"] == expected["rows"]
    assert got["ragged"] == expected["ragged"]
    assert got["unchecked"] == expected["unchecked"]
    first_diff = next(
        ((i, g, e) for i, (g, e) in enumerate(zip(got["findings"], expected["findings"], strict=False)) if g != e),
        None,
    )
    assert first_diff is None, f"first differing finding #{first_diff[0]}: got {first_diff[1]}, golden {first_diff[2]}"
    assert len(got["findings"]) == len(expected["findings"])
    assert got == expected


def validation_result(name: str, release: Release) -> dict[str, Any]:
    """What today's validator says about one corpus input: every finding and the summary counts."""
    from cld_validation.reference import validate_stream

    findings: list[list[Any]] = []

    def sink(row: int, f: Any) -> None:
        findings.append([row, f.header, f.status.value, f.validity.value, f.rule, f.message])

    text = io.StringIO(read_gz_text(DATA / f"{name}.csv.gz"), newline="")
    summary = validate_stream(text, release=release, sink=sink, la_code=PREVIEW_TENANT)
    report = summary.to_json(load_spec())
    return {
        "rows": summary.rows,
        "rows_with_failures": summary.rows_with_failures,
        "failures": summary.failures,
        "unchecked": dict(sorted(summary.unchecked.items())),
        "ragged": [summary.short_rows, summary.long_rows, list(summary.ragged_lines)],
        "failures_by_field_and_rule": report["failures_by_field_and_rule"],
        "findings": findings,
    }


def preview_result(name: str, workdir: Path) -> dict[str, Any]:
    """``cld preview``'s pseudonymised file and risk figures for one input under the fixed key."""
    from typer.testing import CliRunner

    from cld_cli.main import app

    src = workdir / f"{name}.csv"
    src.write_text(read_gz_text(DATA / f"{name}.csv.gz"), encoding="utf-8", newline="")
    key = workdir / "golden.key"
    key.write_text(PREVIEW_KEY_HEX)
    out = workdir / f"{name}-preview"
    result = CliRunner().invoke(
        app, ["preview", str(src), "--key-file", str(key), "--tenant", PREVIEW_TENANT, "--out", str(out)]
    )
    if result.exit_code != 0:
        raise RuntimeError(f"cld preview failed on {name}: {result.output[-2000:]}")
    risk = json.loads((out / "risk.json").read_text())
    return {"pseudonymised_csv": (out / "pseudonymised.csv").read_text(encoding="utf-8"), "risk": risk}


def main() -> None:  # pragma: no cover - run by hand to (re)freeze the corpus
    import tempfile

    DATA.mkdir(parents=True, exist_ok=True)
    counts = {
        "generated_r1": write_gz_csv(DATA / "generated_r1.csv.gz", generated(Release.R1, people=1500, seed=SEED)),
        "generated_r2": write_gz_csv(DATA / "generated_r2.csv.gz", generated(Release.R2, people=1500, seed=SEED + 1)),
        "adversarial_r1": write_gz_csv(
            DATA / "adversarial_r1.csv.gz", adversarial(Release.R1, rows=2500, seed=SEED + 2)
        ),
        "adversarial_r2": write_gz_csv(
            DATA / "adversarial_r2.csv.gz", adversarial(Release.R2, rows=2500, seed=SEED + 3)
        ),
        "fixtures_r1": write_gz_csv(DATA / "fixtures_r1.csv.gz", fixtures(Release.R1)),
        "fixtures_r2": write_gz_csv(DATA / "fixtures_r2.csv.gz", fixtures(Release.R2)),
    }
    for name, release in CORPUS.items():
        blob = json.dumps(validation_result(name, release), ensure_ascii=False, indent=0).encode()
        (DATA / f"{name}.findings.json.gz").write_bytes(gzip.compress(blob, mtime=0))
    with tempfile.TemporaryDirectory() as tmp:
        for name in PREVIEWED:
            blob = json.dumps(preview_result(name, Path(tmp)), ensure_ascii=False, indent=0).encode()
            (DATA / f"{name}.preview.json.gz").write_bytes(gzip.compress(blob, mtime=0))
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
