"""``cld generate``: a synthetic CLD file (and optionally the ground truth of the errors injected into it).

The rows come from ``cld_synth.generator`` (pure, seeded); this module only parses options, streams rows to the CSV
file, shows progress and prints a one-line summary. Synthetic data only: see ``synth`` for how identifiers,
code values and errors are made.
"""

from __future__ import annotations

import csv
import json
import operator
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cld_schemas.spec import Release, load_spec
from cld_synth import generator as synth

TRUTH_COLUMNS = ("row", "field", "kind", "expected_validity", "rule")
_PROGRESS_EVERY = 1000  # people between progress-bar updates (a redraw per person would dominate the run)
_Advance = Callable[[int], None]


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


def parse_period_end(text: str) -> date:
    """dd/mm/yyyy (the CLD format) or yyyy-mm-dd."""
    try:
        if "/" in text:
            day, month, year = (int(p) for p in text.split("/"))
            return date(year, month, day)
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("give a date as dd/mm/yyyy or yyyy-mm-dd") from None


def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV file to write (UTF-8, spec headers in spec order).")],
    people: Annotated[int, typer.Option("--people", "-n", min=0, help="How many synthetic people.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed and options give the same file.")] = 1,
    release: Annotated[Release, typer.Option("--release", "-r", help="Specification release of the file.")] = (
        Release.R2
    ),
    period_end: Annotated[
        str | None,
        typer.Option(
            "--period-end",
            help="Reporting period end (dd/mm/yyyy or yyyy-mm-dd); the period is the 12 months ending then. "
            "Default: the last quarter end before today.",
        ),
    ] = None,
    la: Annotated[str, typer.Option("--la", help="LA code (3 digits).")] = synth.DEFAULT_LA_CODE,
    with_la_code: Annotated[
        bool, typer.Option("--with-la-code", help="Add an LA Code column (not part of the file by default).")
    ] = False,
    error_rate: Annotated[
        float,
        typer.Option("--error-rate", min=0.0, max=1.0, help="Share of rows given one injected error (e.g. 0.05)."),
    ] = 0.0,
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="Write every injected error here (.csv or .json): row, field, kind, validity."),
    ] = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal).")
    ] = None,
) -> None:
    """Write a synthetic CLD file for tests, demos and benchmarks (never real people: NHS numbers 999...)."""
    err = Console(stderr=True)
    if not (len(la) == 3 and la.isdigit()):
        raise typer.BadParameter("the LA code is 3 digits", param_hint="--la")
    if truth is not None and truth.suffix.lower() not in (".csv", ".json"):
        raise typer.BadParameter("the truth file must end in .csv or .json", param_hint="--truth")
    end = parse_period_end(period_end) if period_end else synth.default_period_end(date.today())
    spec = load_spec()
    columns = [f.name for f in spec.fields if f.in_file is True or (with_la_code and f.name == "la_code")]
    columns.sort(key=lambda n: spec.field(n).order)
    headers = [spec.field(n).header for n in columns]
    pick = operator.itemgetter(*columns)
    show_progress = sys.stderr.isatty() if progress is None else progress

    from cld_runtime.files import AtomicFile, FileWriteError, os_reason

    started = time.perf_counter()
    rows = errors = 0
    truth_sink: _TruthWriter | None = None
    target: AtomicFile | None = None
    try:
        target = AtomicFile(out, newline="")  # private, exclusive, never through a symlink (cld_runtime.files)
        truth_sink = _TruthWriter(truth) if truth is not None else None
        with _progress(show_progress, people, err) as advance:
            writer = csv.writer(target.file)
            writer.writerow(headers)
            for done, person_rows in enumerate(
                synth.generate_people(
                    people=people, seed=seed, period_end=end, release=release, error_rate=error_rate, la_code=la
                ),
                start=1,
            ):
                for row, injected in person_rows:
                    writer.writerow(pick(row))
                    if injected:
                        errors += len(injected)
                        if truth_sink is not None:
                            for e in injected:
                                truth_sink.add(e)
                rows += len(person_rows)
                if done % _PROGRESS_EVERY == 0:
                    advance(_PROGRESS_EVERY)
            advance(people % _PROGRESS_EVERY)
        if truth_sink is not None:
            truth_sink.close()
        target.commit()
    except FileWriteError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:  # disk full or an I/O error while writing
        err.print(f"[red]error:[/] writing {out} failed: {os_reason(exc)}")
        raise typer.Exit(2) from None
    finally:
        if target is not None:
            target.abort()  # a no-op after commit
        if truth_sink is not None:
            truth_sink.abort()
    seconds = time.perf_counter() - started
    rate = rows / seconds if seconds > 0 else 0.0
    truth_note = f", truth {truth}" if truth is not None else ""
    typer.echo(
        f"Wrote {rows:,} rows for {people:,} people ({errors:,} errors injected, {release.value}, period "
        f"{synth.period_start_for(end):%d/%m/%Y}-{end:%d/%m/%Y}) to {out}{truth_note} in {seconds:.1f}s "
        f"({rate:,.0f} rows/s)."
    )


class _TruthWriter:
    """Streams the injected errors as CSV or as a JSON array (memory stays flat)."""

    def __init__(self, path: Path) -> None:
        from cld_runtime.files import AtomicFile

        self.json = path.suffix.lower() == ".json"
        self.target = AtomicFile(path, newline="")
        self.fh: IO[str] = self.target.file
        self.first = True
        if self.json:
            self.fh.write("[")
            self.csv = None
        else:
            self.csv = csv.writer(self.fh)
            self.csv.writerow(TRUTH_COLUMNS)

    def add(self, e: synth.InjectedError) -> None:
        values = (e.row, e.field, e.kind.value, e.expected_validity.value, e.rule)
        if self.csv is not None:
            self.csv.writerow(values)
            return
        self.fh.write(("\n" if self.first else ",\n") + json.dumps(dict(zip(TRUTH_COLUMNS, values, strict=True))))
        self.first = False

    def close(self) -> None:
        if self.json:
            self.fh.write("\n]\n")
        self.target.commit()

    def abort(self) -> None:
        self.target.abort()


class _progress:  # noqa: N801 - used like a function in a with statement
    """A rich progress bar over people, or a no-op when not on a terminal."""

    def __init__(self, enabled: bool, total: int, console: Console) -> None:
        self.bar: Progress | None = None
        if enabled:
            self.bar = Progress(
                TextColumn("generating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("people"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self.task = self.bar.add_task("generate", total=total)

    def __enter__(self) -> _Advance:
        if self.bar is None:
            return _noop
        self.bar.start()
        bar, task = self.bar, self.task
        return lambda n: bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _noop(n: int) -> None:
    return None
