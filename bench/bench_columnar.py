"""Benchmark the columnar validation engine against the reference (figures, not assertions; issue 11 item 1).

    .venv/bin/python bench/bench_columnar.py [--big /tmp/h/big.csv] [--batch 50000]

For each input (the golden corpus' 3k-row generated files, and a generated ~110k-row Release 2 file: made with
``cld generate --people 55000 --release r2 --seed 7 --error-rate 0.02`` when ``--big`` does not exist), in one run:

- floor: a plain ``csv.reader`` loop over the file (``bench/floors.py: csv_floor``, best of two);
- reference: ``reference.validate_stream`` (the per-row ``rules.Validator``), findings to a counting sink;
- columnar: ``columnar.validate_stream_columnar`` (csvfile's strict parser in cell batches -> frames -> engine);
- engine only: ``columnar.validate_frame`` over frames already built (what the CSV reading costs is left out);

each as rows/s and as a ratio of its time to the floor's (lower is better; 1.0 = as fast as merely reading).
Then, in a child process, the columnar path's peak RSS on the big file.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import polars as pl  # noqa: E402

from bench.floors import csv_floor  # noqa: E402  (the bench runs as a script)
from cld_schemas.spec import Release, load_spec  # noqa: E402
from cld_validation import columnar  # noqa: E402
from cld_validation.reference import validate_stream  # noqa: E402  (the per-row oracle)
from cld_validation.report import open_file  # noqa: E402

CLD = ROOT / ".venv" / "bin" / "cld"
GOLDEN = ROOT / "tests" / "golden" / "data"


T = TypeVar("T")


def _best(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    best = float("inf")
    out = fn()
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def reference(path: Path, release: Release) -> int:
    found = 0

    def sink(_n: int, _f: object) -> None:
        nonlocal found
        found += 1

    with path.open(encoding="utf-8-sig", newline="") as fh:
        validate_stream(fh, release=release, sink=sink)
    return found


def columnar_path(path: Path, release: Release, batch: int) -> int:
    found = 0

    def sink(frame: pl.DataFrame) -> None:
        nonlocal found
        found += frame.height

    with path.open(encoding="utf-8-sig", newline="") as fh:
        columnar.validate_stream_columnar(fh, release=release, sink=sink, batch_size=batch)
    return found


def engine_only(path: Path, release: Release, batch: int) -> tuple[float, int]:
    spec = load_spec()
    with path.open(encoding="utf-8-sig", newline="") as fh:
        _header, rows = open_file(fh, spec=spec, sparse=True)
        frames = list(columnar.iter_frames(rows, tuple(f.name for f in spec.fields), batch))
    plan = columnar.plan_for(spec, release, absent=frozenset({"la_code"}))
    t0 = time.perf_counter()
    found = sum(columnar.validate_frame(f, plan).findings.height for f in frames)
    return time.perf_counter() - t0, found


def measure(label: str, path: Path, release: Release, batch: int, repeats: int) -> None:
    rows, floor_s = csv_floor(path)
    ref_s, ref_found = _best(lambda: reference(path, release), repeats)
    col_s, col_found = _best(lambda: columnar_path(path, release, batch), repeats)
    eng_s, eng_found = engine_only(path, release, batch)
    _rows, floor_s2 = csv_floor(path)
    floor_s = min(floor_s, floor_s2)
    print(f"-- {label}: {rows:,} rows, {path.name}, batch {batch:,}")
    print(f"   floor csv.reader     {rows / floor_s:>10,.0f} rows/s   ratio 1.00")
    for name, secs, found in (
        ("reference validate", ref_s, ref_found),
        ("columnar file path", col_s, col_found),
        ("columnar engine only", eng_s, eng_found),
    ):
        print(f"   {name:<20} {rows / secs:>10,.0f} rows/s   ratio {secs / floor_s:4.2f}   findings {found:,}")
    if not ref_found == col_found == eng_found:
        print("   WARNING: the engines disagree on the number of findings")


def child_rss(path: Path, batch: int) -> None:
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from bench.bench_columnar import columnar_path; from cld_schemas.spec import Release;"
        "columnar_path(Path(sys.argv[2]), Release.R2, int(sys.argv[3]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(ROOT), str(path), str(batch)])
    _, status, usage = os.wait4(proc.pid, 0)
    print(
        f"-- columnar file path in a child process: peak RSS {usage.ru_maxrss / 1024:.0f} MB "
        f"(exit {os.waitstatus_to_exitcode(status)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big", type=Path, default=ROOT / ".cache" / "bench" / "columnar-big-r2.csv")
    ap.add_argument("--batch", type=int, default=columnar.DEFAULT_BATCH_ROWS)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"machine: {os.cpu_count()} cores; load {load}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, release in (("generated_r1", Release.R1), ("generated_r2", Release.R2)):
            path = Path(tmp) / f"{name}.csv"
            path.write_bytes(gzip.decompress((GOLDEN / f"{name}.csv.gz").read_bytes()))
            measure(f"golden {name}", path, release, args.batch, args.repeats)
    if not args.big.exists():
        args.big.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                *(str(CLD), "generate", "--people", "55000", "--release", "r2", "--seed", "7"),
                *("--error-rate", "0.02", "--out", str(args.big), "--no-progress"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    measure("generated 55k people", args.big, Release.R2, args.batch, args.repeats)
    child_rss(args.big, args.batch)


if __name__ == "__main__":
    main()
