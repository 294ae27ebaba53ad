"""Benchmark `cld validate` on a generated file: rows/second and peak RSS (figures, not assertions).

    .venv/bin/python bench/bench_validate.py --rows 1000000

Generates the file once (cached under .cache/bench/), then runs `cld validate` as a child process and reads the
child's peak RSS from the kernel (resource.getrusage(RUSAGE_CHILDREN)).

    .venv/bin/python bench/bench_validate.py --rows 200000 --engine-only

runs the columnar engine's file path alone instead (``report.validate_stream``: reading, rules, DQ profile, fixes,
counts; no checks across rows, no report written), in a child process, beside the same floor.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.floors import csv_floor  # noqa: E402  (the bench runs as a script)

CLD = ROOT / ".venv" / "bin" / "cld"


def ensure_file(rows: int, release: str) -> Path:
    out = ROOT / ".cache" / "bench" / f"cld-{release}-{rows}.csv"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # The generator writes about two rows per person; ask for enough people, then cut to the row count.
    people = max(1, rows * 11 // 20 + 10)
    tmp = out.with_suffix(".full.csv")
    t0 = time.perf_counter()
    subprocess.run(
        [
            str(CLD),
            "generate",
            "--people",
            str(people),
            "--release",
            release,
            "--seed",
            "7",
            "--error-rate",
            "0.02",
            "--out",
            str(tmp),
            "--no-progress",
        ],
        check=True,
    )
    print(f"generated {tmp.name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    with tmp.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for n, line in enumerate(src):
            if n > rows:
                break
            dst.write(line)
    tmp.unlink()
    return out


def engine_child(path: Path, release: str) -> None:
    """The engine's file path alone, findings to a counting sink; prints the rows, findings and CPU seconds."""
    from cld_schemas.spec import Release
    from cld_validation.report import validate_stream

    found = [0]
    cpu = time.process_time()
    with path.open(encoding="utf-8", newline="") as fh:
        summary = validate_stream(
            fh, release=Release(release), located_sink=lambda *_: found.__setitem__(0, found[0] + 1)
        )
    print(f"{summary.rows} rows, {found[0]} findings, {time.process_time() - cpu:.1f} s CPU")


def engine_only(path: Path, release: str) -> None:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child-engine", str(path), "--release", release], stdout=subprocess.PIPE
    )
    out = proc.stdout.read().decode().strip() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    floor_rows, floor_s = csv_floor(path)
    print(
        f"engine only (report.validate_stream): {out}; {elapsed:.1f} s wall; peak RSS {usage.ru_maxrss / 1024:.0f} MB; "
        f"exit {os.waitstatus_to_exitcode(status)}"
    )
    print(f"floor (plain csv.reader loop): {floor_rows:,} rows in {floor_s:.1f} s; ratio {elapsed / floor_s:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--release", default="r2")
    ap.add_argument("--engine-only", action="store_true", help="the columnar engine's file path alone")
    ap.add_argument("--child-engine", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_engine is not None:
        engine_child(args.child_engine, args.release)
        return
    path = ensure_file(args.rows, args.release)
    if args.engine_only:
        engine_only(path, args.release)
        return
    report = path.with_suffix(".report.json")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(CLD), "validate", str(path), "--release", args.release, "--json", str(report), "--no-progress"],
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the generator's
    elapsed = time.perf_counter() - t0
    rss_mb = usage.ru_maxrss / 1024
    rows = sum(1 for _ in path.open(encoding="utf-8")) - 1
    # The floor beside it, in the same run: a plain csv.reader loop over the same file (best of two, before and
    # after, so a noisy neighbour hurts the floor no less than the command).
    floor_rows, floor_s = csv_floor(path)
    print(
        f"cld validate: {rows:,} rows in {elapsed:.1f} s = {rows / elapsed:,.0f} rows/s; "
        f"peak RSS {rss_mb:.0f} MB; exit {os.waitstatus_to_exitcode(status)}; report {report.stat().st_size:,} bytes"
    )
    print(
        f"floor (plain csv.reader loop): {floor_rows:,} rows in {floor_s:.1f} s = {floor_rows / floor_s:,.0f} rows/s; "
        f"ratio cld validate / floor = {elapsed / floor_s:.2f} (target <= 1.0, issue 11)"
    )


if __name__ == "__main__":
    main()
