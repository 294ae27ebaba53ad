"""Benchmark the pseudonymisation preview: rows/s pseudonymised, risk seconds, peak RSS.

    .venv/bin/python bench/bench_preview.py                     # synthesise 1,000,000 rows in a temp dir
    .venv/bin/python bench/bench_preview.py --rows 200000
    .venv/bin/python bench/bench_preview.py --path some_cld.csv # time an existing file

The synthetic file has every spec column, synthetic values only (NHS numbers from the 999 range with valid
Modulus 11 check digits, made-up names, postcodes in a made-up 'XX'/'ZY' area). Timings are printed, never
asserted. Targets (issue 11): ``cld preview`` end to end at most 2x the plain ``csv.reader`` loop over the same
file (bench/floors.py, run beside it), risk (per-frame reduction + figures) < 3 s. The stages are those of the
columnar engine: frames read with csvfile's parser, ``Pseudonymiser.pseudonymise_frame``, ``FrameRisk``.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from cld_cli.cmd_preview import BATCH_ROWS
from cld_pseudonymisation import DEFAULT_QI, Pseudonymiser, PseudonymKey, load_policy
from cld_pseudonymisation.columnar import FrameRisk
from cld_pseudonymisation.pseudonymiser import person_key, qi_tuple, row_order
from cld_pseudonymisation.reference import ReferencePseudonymiser
from cld_pseudonymisation.risk import RiskAccumulator
from cld_schemas.csvfile import iter_records
from cld_validation.columnar import iter_frames

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.floors import csv_floor
from cld_schemas.spec import Release, load_spec


def nhs_number(rng: random.Random) -> str:
    while True:
        body = "999" + f"{rng.randrange(1_000_000):06d}"
        total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:
            return body + str(check)


def synthesise(path: Path, rows: int, people: int, seed: int = 7) -> None:
    spec = load_spec()
    rng = random.Random(seed)
    fields = spec.file_fields
    codes: dict[str, list[str]] = {}
    for f in fields:
        lst = f.code_list(Release.R2) or f.code_list(Release.R1)
        if f.format == "code" and lst is not None and lst.values:
            codes[f.name] = [v.value for v in lst.values]
    first = ["Zorva", "Quill", "Maelin", "Tobrin", "Essaly", "Ravik", "Onwen", "Pellam"]
    last = ["Fakeley", "Notreal", "Synthson", "Madeup", "Testbury", "Imaginor"]
    person_rows: list[dict[str, str]] = []
    for p in range(people):
        area = f"{rng.choice(['XX', 'ZY'])}{rng.randrange(1, 40)}"
        pc = f"{area} {rng.randrange(10)}{rng.choice('ABDEFG')}{rng.choice('HJLNPQ')}"
        person_rows.append(
            {
                "nhs_number": nhs_number(rng) if rng.random() < 0.95 else "",
                "la_person_unique_identifier": f"LAP-{p:07d}",
                "first_name": rng.choice(first),
                "last_name": rng.choice(last),
                "date_of_birth": f"{rng.randrange(1, 29):02d}/{rng.randrange(1, 13):02d}/{rng.randrange(1925, 2006)}",
                "postcode": pc,
                **{
                    n: rng.choice(codes[n])
                    for n in ("gender", "ethnicity", "primary_support_reason", "client_type", "accommodation_status")
                    if n in codes
                },
            }
        )
    names = [f.name for f in fields]
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([f.header for f in fields])
        for i in range(rows):
            person = person_rows[rng.randrange(people)]
            row = dict(person)
            row.update(
                la_code="E09000001",
                reporting_period_start_date="01/04/2025",
                reporting_period_end_date="31/03/2026",
                event_type=rng.choice(("Request", "Assessment", "Service", "Review")),
                event_reference=f"EV-{i:08d}",
                event_start_date=f"{rng.randrange(1, 29):02d}/{rng.randrange(1, 13):02d}/2025",
                event_description="Phone conversation about support" if i % 3 == 0 else "Visit by worker",
            )
            w.writerow([row.get(n, "") for n in names])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--people", type=int, default=0, help="distinct people (default rows/4)")
    ap.add_argument("--path", type=Path, help="an existing CLD CSV to time instead of a synthetic one")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.path
        if path is None:
            path = Path(tmp) / "synthetic_cld.csv"
            t = time.perf_counter()
            synthesise(path, args.rows, args.people or max(1, args.rows // 4))
            print(
                f"synthesised {args.rows:,} rows ({path.stat().st_size / 1e6:.0f} MB) in "
                f"{time.perf_counter() - t:.1f} s"
            )

        key_hex = os.urandom(32).hex()
        key = PseudonymKey.from_text(key_hex)
        policy = load_policy()
        ps = Pseudonymiser(policy, key, tenant="E09000001", purpose="bench")
        names = tuple(f.name for f in policy.fields)
        batch = BATCH_ROWS

        def frames() -> Iterator[pl.DataFrame]:
            fh = path.open(encoding="utf-8-sig", newline="")
            with fh:
                yield from iter_frames(iter_records(fh)[1], names, batch)

        # Whole passes, timed in wall-clock and CPU seconds (CPU time is what the code costs when other
        # processes compete for the cores). Pass 1 reads frames only; pass 2 adds pseudonymisation; pass 3 adds
        # the risk reduction per frame. Each stage's cost is the difference between passes.
        acc = FrameRisk(DEFAULT_QI, k_threshold=5)

        def timed(stage: int) -> tuple[int, float, float]:
            w0, c0 = time.perf_counter(), time.process_time()
            count = 0
            for frame in frames():
                count += frame.height
                if stage >= 2:
                    p = ps.pseudonymise_frame(frame)
                    if stage >= 3:
                        acc.add_frame(p)
            return count, time.perf_counter() - w0, time.process_time() - c0

        n, w_parse, c_parse = timed(1)
        _, w2, c2 = timed(2)
        _, w3, c3 = timed(3)
        w_pseudo, c_pseudo = w2 - w_parse, c2 - c_parse
        w_add, c_add = w3 - w2, c3 - c2
        w0, c0 = time.perf_counter(), time.process_time()
        figures = acc.figures()
        w_fig, c_fig = time.perf_counter() - w0, time.process_time() - c0

        # The per-record code the frames replaced (the test oracle), over the same file in the same run: records
        # parsed, pseudonymised and added to a RiskAccumulator one at a time, then its figures.
        ref = ReferencePseudonymiser(policy, key, tenant="E09000001", purpose="bench")
        ref_acc = RiskAccumulator(DEFAULT_QI, k_threshold=5)
        w0, c0 = time.perf_counter(), time.process_time()
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for rec in iter_records(fh)[1]:
                out = ref.pseudonymise(rec)
                ref_acc.add(person_key(out), qi_tuple(out, DEFAULT_QI), at=row_order(out))
        ref_figures = ref_acc.figures()
        w_ref, c_ref = time.perf_counter() - w0, time.process_time() - c0
        same = ref_figures == figures
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        # The real command, end to end (parse, pseudonymise, risk, write CSV/JSON/Markdown), in a child process.
        cli = Path(sys.executable).with_name("cld")
        t0 = time.perf_counter()
        subprocess.run(
            [str(cli), "preview", str(path), "--out", str(Path(tmp) / "out"), "--tenant", "E09000001"],
            env={**os.environ, "CLD_PSEUDO_KEY": key_hex},
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        t_cli = time.perf_counter() - t0
        floor_rows, floor_s = csv_floor(path)  # beside it, in the same run
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        c_cli = children.ru_utime + children.ru_stime
        cli_rss_mb = children.ru_maxrss / 1024

    print(f"rows                         {n:,}")
    print(
        f"people                       {figures.people:,} (classes {figures.classes:,}, min k {figures.min_k}, "
        f"uniques {figures.uniques:,})"
    )
    print("stage                        wall s    CPU s   rows/s (CPU)")
    for label, w, c in (
        ("CSV parse (frames)", w_parse, c_parse),
        ("pseudonymise_frame", w_pseudo, c_pseudo),
        ("risk: per-frame reduction", w_add, c_add),
    ):
        print(f"{label:<28} {w:7.2f}  {c:7.2f}   {n / c:,.0f}")
    print(f"{'risk: figures()':<28} {w_fig:7.2f}  {c_fig:7.2f}")
    print(f"{'risk total (add + figures)':<28} {w_add + w_fig:7.2f}  {c_add + c_fig:7.2f}   (target < 3 s)")
    print(f"pseudonymisation: {n / c_pseudo:,.0f} rows/s CPU, {n / w_pseudo:,.0f} wall")
    columnar_w, columnar_c = w3 + w_fig, c3 + c_fig
    print(
        f"per-record reference (parse, pseudonymise, risk) {w_ref:.2f} s wall, {c_ref:.2f} s CPU; columnar "
        f"{columnar_w:.2f} s wall, {columnar_c:.2f} s CPU: ratio columnar / per-record {columnar_w / w_ref:.2f} wall, "
        f"{columnar_c / c_ref:.2f} CPU; same risk figures: {same}"
    )
    print(f"peak RSS (this process)      {rss_mb:,.0f} MB (includes the synthetic generator's people)")
    print(
        f"cld preview end to end       {t_cli:.2f} s wall, {c_cli:.2f} s CPU  ({n / c_cli:,.0f} rows/s CPU), "
        f"peak RSS {cli_rss_mb:,.0f} MB"
    )
    print(
        f"floor (plain csv.reader loop) {floor_s:.2f} s for {floor_rows:,} rows; ratio cld preview / floor = "
        f"{t_cli / floor_s:.2f} (target <= 2.0, issue 11); risk {w_add + w_fig:.2f} s (target < 3 s, issue 11)"
    )
    print(f"python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
