"""``cld validate FILE.csv``: the central DQ report's findings, in seconds, before the file is sent.

Exit codes: 0 no row has a failure; 1 some row has a failure; 2 the input cannot be used at all.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from cld_schemas.csvfile import CLDFileError
from cld_schemas.spec import CodeListError, Release, Spec, load_code_list_override, load_spec

EXIT_OK, EXIT_FAILURES, EXIT_UNUSABLE = 0, 1, 2


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)


def load_spec_with_overrides(codelists: Path | None) -> Spec:
    spec = load_spec()
    if codelists is None:
        return spec
    return spec.with_code_lists(load_code_list_override(codelists, spec=spec))


def validate(
    file: Annotated[Path, typer.Argument(help="The LA's CLD file (CSV with the spec's column headers).")],
    release: Annotated[
        Release, typer.Option("--release", "-r", help="Specification release of the file.")
    ] = Release.R2,
    json_report: Annotated[
        Path | None, typer.Option("--json", help="Write the full report (every finding) as JSON here.")
    ] = None,
    codelists: Annotated[
        Path | None,
        typer.Option(
            "--codelists",
            help="Official code lists to check against (CSV/JSON/XLSX with columns field, release, value[, key]).",
        ),
    ] = None,
    la: Annotated[str | None, typer.Option("--la", help="LA code, when the file has no LA Code column.")] = None,
    show: Annotated[int, typer.Option(help="How many failing rows to list on screen.")] = 10,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal).")
    ] = None,
) -> None:
    """Check an LA's CLD file against the specification, row by row and field by field."""
    from cld_validation.report import FileSummary, validate_stream  # import late: keeps `cld --help` fast

    console = Console(stderr=False)
    err = Console(stderr=True)
    try:
        spec = load_spec_with_overrides(codelists)
    except CodeListError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_UNUSABLE) from None
    if not file.is_file():
        err.print(f"[red]error:[/] no such file: {file}")
        raise typer.Exit(EXIT_UNUSABLE)
    size = file.stat().st_size
    show_progress = sys.stderr.isatty() if progress is None else progress

    from cld_runtime.files import FileWriteError

    try:
        writer: _FindingWriter | None = _FindingWriter(json_report, release) if json_report else None
    except FileWriteError as exc:
        err.print(f"[red]error:[/] --json: {exc}")
        raise typer.Exit(EXIT_UNUSABLE) from None
    examples: list[tuple[int, str, str, str]] = []

    def sink(row: int, fnd: Any) -> None:
        if writer is not None:
            writer.add(row, fnd)
        if len(examples) < show * 3:
            examples.append((row, fnd.header, fnd.validity.value, fnd.rule))

    raw: BinaryIO = file.open("rb")
    summary: FileSummary
    try:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")
        with _Progress(show_progress, size, err) as update:
            summary = validate_stream(
                text,
                release=release,
                spec=spec,
                la_code=la,
                sink=sink,
                on_row=lambda n: update(raw.tell(), n),
            )
    except CLDFileError as exc:
        if writer is not None:
            writer.abort()
        err.print(f"[red]error:[/] {file.name}: {exc}")
        raise typer.Exit(EXIT_UNUSABLE) from None
    except UnicodeDecodeError as exc:
        if writer is not None:
            writer.abort()
        where = raw.tell() - len(exc.object) + exc.start
        err.print(
            f"[red]error:[/] {file.name} is not UTF-8 text (bad byte near byte {where}). "
            "Save it as UTF-8 (with or without BOM) and try again."
        )
        raise typer.Exit(EXIT_UNUSABLE) from None
    except OSError as exc:  # reading the input or writing --json failed (disk full, I/O error)
        if writer is not None:
            writer.abort()
        from cld_runtime.files import os_reason

        err.print(f"[red]error:[/] reading {file.name} or writing the report failed: {os_reason(exc)}")
        raise typer.Exit(EXIT_UNUSABLE) from None
    finally:
        raw.close()

    report = summary.to_json(spec)
    if writer is not None:
        try:
            writer.finish(summary.rows, report)
        except (FileWriteError, OSError) as exc:
            writer.abort()
            err.print(f"[red]error:[/] --json: {exc if isinstance(exc, FileWriteError) else type(exc).__name__}")
            raise typer.Exit(EXIT_UNUSABLE) from None
    _print_summary(console, file, summary, report, examples[:show])
    raise typer.Exit(EXIT_FAILURES if summary.rows_with_failures else EXIT_OK)


class _FindingWriter:
    """Streams findings into the JSON report so memory stays flat; renamed into place only on success."""

    def __init__(self, path: Path, release: Release) -> None:
        from cld_runtime.files import AtomicFile  # a private temporary file, created exclusively, never followed

        self.path = path
        self.target = AtomicFile(path)
        self.fh = self.target.file
        self.fh.write(f'{{"release": {json.dumps(release.value)}, "findings": [')
        self.first = True

    def add(self, row: int, fnd: Any) -> None:
        item = {
            "row": row,
            "field": fnd.header,
            "status": fnd.status.value,
            "validity": fnd.validity.value,
            "rule": fnd.rule,
            "message": fnd.message,
        }
        self.fh.write(("\n" if self.first else ",\n") + json.dumps(item, ensure_ascii=False))
        self.first = False

    def finish(self, rows: int, summary: dict[str, Any]) -> None:
        self.fh.write(f'\n], "rows": {rows}, "summary": {json.dumps(summary, ensure_ascii=False)}}}\n')
        self.target.commit()

    def abort(self) -> None:
        self.target.abort()


class _Progress:
    def __init__(self, enabled: bool, total: int, console: Console) -> None:
        self.enabled = enabled
        self.total = total
        self.console = console
        self.bar: Progress | None = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda pos, n: None
        self.bar = Progress(
            TextColumn("[bold]validating"),
            BarColumn(),
            TextColumn("{task.fields[rows]:,} rows"),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.start()
        task = self.bar.add_task("validate", total=self.total, rows=0)
        bar = self.bar
        return lambda pos, n: bar.update(task, completed=pos, rows=n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _print_summary(
    console: Console, file: Path, summary: Any, report: dict[str, Any], examples: list[tuple[int, str, str, str]]
) -> None:
    console.print(
        f"[bold]{file.name}[/]: {summary.rows:,} rows, "
        f"[{'red' if summary.rows_with_failures else 'green'}]{summary.rows_with_failures:,} with failures[/] "
        f"({summary.failures:,} failed fields), release {summary.release.value}"
    )
    if report["missing_columns"]:
        console.print(f"[yellow]columns not in the file (treated as blank):[/] {', '.join(report['missing_columns'])}")
    ragged = report["rows_with_too_few_cells"] + report["rows_with_too_many_cells"]
    if ragged:
        lines = ", ".join(str(n) for n in report["first_ragged_lines"][:5])
        console.print(
            f"[yellow]{ragged:,} rows have a different number of cells from the header[/] "
            f"(missing cells read as blank, extra cells ignored; first at lines {lines})"
        )
    if report["unknown_columns"]:
        console.print(f"[yellow]columns the spec does not define (ignored):[/] {', '.join(report['unknown_columns'])}")
    if report["failures_by_field_and_rule"]:
        t = Table(title="Failures by field and rule (DQ report terms)")
        for col in ("Field", "Validity", "Rule", "Rows"):
            t.add_column(col, justify="right" if col == "Rows" else "left")
        for item in report["failures_by_field_and_rule"][:25]:
            t.add_row(item["field"], item["validity"], item["rule"], f"{item['count']:,}")
        console.print(t)
        rules = report["failures_by_rule"]
        for rid, info in list(rules.items())[:10]:
            if info["explanation"]:
                console.print(f"  [bold]{rid}[/]: {info['explanation']}")
    if examples:
        console.print("First failing rows (row = data row, header not counted):")
        for row, header, validity, rule in examples:
            console.print(f"  row {row}: {header} - {validity} [{rule}]")
    if report["unchecked_values"]:
        console.print("[yellow]Values that could not be checked[/] (code list not fully known for this release):")
        for header, info in report["unchecked_values"].items():
            console.print(f"  {header}: {info['count']:,} values")
        console.print("  Load the official lists with --codelists FILE to check them.")
