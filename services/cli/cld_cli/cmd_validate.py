"""``cld validate FILE.csv``: the central DQ report's findings, in seconds, before the file is sent.

Reports: ``--json FILE`` (``-`` for standard output; the summary then goes to standard error), ``--xlsx FILE``
(the workbook: summary and profile, findings with Excel row and fix, values) and ``--html FILE`` (one
self-contained page with charts). Every report is written through ``write_report`` (bytes -> path).

Exit codes: 0 no row has a failure; 1 some row has a failure; 2 the input cannot be used at all, or a report
cannot be written.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from cld_schemas.csvfile import CLDFileError
from cld_schemas.spec import CodeListError, Release, Spec, load_code_list_override, load_spec

EXIT_OK, EXIT_FAILURES, EXIT_UNUSABLE = 0, 1, 2
STDOUT = Path("-")


class ReportWriteError(Exception):
    """A report could not be written; the message names the path and the reason, never a row's value."""


def write_report(path: Path, data: bytes) -> None:
    """Write one report file whole or not at all, through the shared safe writer (``cld_runtime.files``: a private
    temporary file created exclusively beside it, no symlink followed, non-regular targets refused, fsync, rename)."""
    from cld_runtime.files import FileWriteError, write_bytes

    try:
        write_bytes(path, data)
    except FileWriteError as exc:
        raise ReportWriteError(str(exc)) from None
    except OSError as exc:  # the writer names its own errors; this is a last guard, never a traceback
        raise ReportWriteError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None


def _not_decodable(file: Path, encoding: str | None, position: int, exc: UnicodeDecodeError) -> str:
    """A byte that the file's encoding cannot read: the line it is on, and how to fix it in Excel."""
    where = max(0, position - len(exc.object) + exc.start)
    try:
        with file.open("rb") as fh:
            line = fh.read(where).count(b"\n") + 1
    except OSError:
        line = 0
    at = f"line {line}: " if line else ""
    return (
        f"{at}a byte that is not {encoding or 'the detected encoding'} text (near byte {where}); the file mixes "
        "encodings. In Excel use File > Save As > 'CSV UTF-8 (Comma delimited) (*.csv)' and try again, or give "
        "--encoding (e.g. --encoding cp1252 for a file saved as plain 'CSV' on Windows)."
    )


def _check_writable(path: Path) -> str | None:
    """Why a report could not be written there (checked before the work starts), or None."""
    if path == STDOUT:
        return None
    from cld_runtime.files import FileWriteError, check_target

    try:
        check_target(path)
    except FileWriteError as exc:
        return str(exc)
    if not os.access(path.parent, os.W_OK):
        return f"the folder {path.parent} is not writable"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    return None


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
        Release | None,
        typer.Option(
            "--release",
            "-r",
            help="Specification release of the file. Default: the release in force for the file's reporting "
            "period (the spec's cut-over: `cld spec gaps`).",
        ),
    ] = None,
    json_report: Annotated[
        Path | None,
        typer.Option("--json", help="Write the full report (every finding) as JSON here ('-': standard output)."),
    ] = None,
    xlsx_report: Annotated[
        Path | None,
        typer.Option(
            "--xlsx", help="Write the Excel workbook here: summary and DQ profile, every finding with its Excel row."
        ),
    ] = None,
    html_report: Annotated[
        Path | None,
        typer.Option("--html", help="Write the report as one self-contained HTML page with charts here."),
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
    previous: Annotated[
        Path | None,
        typer.Option(
            "--previous",
            help="The --json report of the LA's previous file: compare with it for signs of a partial or top-up file.",
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding",
            help="Text encoding of a CSV (e.g. utf-8, cp1252). Default: detected (UTF-8 with or without BOM, "
            "else Windows-1252), and said in the summary.",
        ),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(
            "--delimiter",
            help="Cell separator of a CSV: comma, semicolon, tab, pipe (or the character). Default: detected.",
        ),
    ] = None,
    sheet: Annotated[
        str | None, typer.Option("--sheet", help="For an .xlsx workbook: the sheet to read (default: the first).")
    ] = None,
) -> None:
    """Check an LA's CLD file against the specification, row by row and field by field."""
    from cld_validation.report import FileSummary, validate_stream  # import late: keeps `cld --help` fast
    from cld_validation.reports import LocatedFinding
    from cld_validation.reports.html import MAX_FINDINGS_ON_PAGE

    to_stdout = json_report == STDOUT
    console = Console(stderr=to_stdout)
    err = Console(stderr=True)
    for target in (json_report, xlsx_report, html_report):
        problem = _check_writable(target) if target is not None else None
        if problem:
            err.print(f"[red]error:[/] cannot write the report: {problem}")
            raise typer.Exit(EXIT_UNUSABLE)
    targets = [t.resolve() for t in (json_report, xlsx_report, html_report) if t is not None and t != STDOUT]
    if len(set(targets)) < len(targets):
        err.print("[red]error:[/] two reports (--json, --xlsx, --html) name the same file")
        raise typer.Exit(EXIT_UNUSABLE)
    if file.resolve() in targets:
        err.print("[red]error:[/] a report would overwrite the file being validated")
        raise typer.Exit(EXIT_UNUSABLE)
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

    across = _across_rows(spec, la, previous, err)
    with contextlib.ExitStack() as cleanup:  # the spooled JSON and the workbook's temp files, whatever happens
        writer: _FindingWriter | None = _FindingWriter() if json_report else None
        if writer is not None:
            cleanup.callback(writer.abort)
        workbook: Any = None
        if xlsx_report is not None:
            from cld_validation.reports.xlsx import WorkbookReport

            workbook = WorkbookReport(file.name)
            cleanup.callback(workbook.close)
        on_page: list[LocatedFinding] = []
        examples: list[tuple[int, str, str, str, str]] = []

        def sink(row: int, line: int, ref: str | None, fnd: Any) -> None:
            if writer is not None:
                writer.add(row, line, ref, fnd)
            if workbook is not None or (html_report is not None and len(on_page) < MAX_FINDINGS_ON_PAGE):
                located = LocatedFinding.of(line, ref, fnd)
                if workbook is not None:
                    workbook.add(located)
                if html_report is not None and len(on_page) < MAX_FINDINGS_ON_PAGE:
                    on_page.append(located)
            if len(examples) < show * 3:
                examples.append((line, fnd.header, fnd.validity.value, fnd.rule, fnd.fix))

        from cld_schemas.lafile import open_la_file

        summary: FileSummary
        read_as: dict[str, Any] = {}
        try:
            with (
                open_la_file(file, encoding=encoding, delimiter=delimiter, sheet=sheet, spec=spec) as la_file,
                _Progress(show_progress, size, err) as update,
            ):
                read_as = la_file.format.to_json()
                try:
                    summary = validate_stream(
                        la_file.lines,
                        delimiter=la_file.format.delimiter,
                        release=release,
                        spec=spec,
                        la_code=la,
                        located_sink=sink,
                        on_row=lambda n: update(la_file.position(), n),
                        on_frame=across.add_frame,
                    )
                except UnicodeDecodeError as exc:
                    raise CLDFileError(_not_decodable(file, la_file.format.encoding, la_file.position(), exc)) from None
        except CLDFileError as exc:
            err.print(f"[red]error:[/] {file.name}: {exc}")
            raise typer.Exit(EXIT_UNUSABLE) from None

        report = summary.to_json(spec)
        report["read_as"] = read_as
        report.update(across.to_json(summary.release))
        _print_summary(console, file, summary, report, examples[:show])
        _print_across_rows(console, report)
        try:
            if writer is not None and json_report is not None:
                data = writer.finish(summary.release, summary.rows, report)
                if to_stdout:
                    _write_stdout(data)
                else:
                    write_report(json_report, data)
            if workbook is not None and xlsx_report is not None:
                write_report(xlsx_report, workbook.finish(report, release=summary.release.value))
            if html_report is not None:
                from cld_validation.reports.html import render_html

                page = render_html(report, on_page, source_name=file.name, release=summary.release.value)
                write_report(html_report, page)
        except ReportWriteError as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(EXIT_UNUSABLE) from None
        for label, target in (("JSON", json_report), ("workbook", xlsx_report), ("page", html_report)):
            if target is not None and target != STDOUT:
                err.print(f"{label} report: {target}")
        raise typer.Exit(EXIT_FAILURES if summary.rows_with_failures else EXIT_OK)


def _write_stdout(data: bytes) -> None:
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except (OSError, ValueError) as exc:  # a closed pipe: say so, no traceback
        raise ReportWriteError(f"cannot write to standard output: {exc}") from None


def _across_rows(spec: Spec, la: str | None, previous: Path | None, err: Console) -> Any:
    """The checks across rows, identity warnings and release hint (issue 13 items 5, 6, 8): validate_across_rows."""
    from cld_cli.validate_across_rows import AcrossRows, PreviousReportError, load_previous

    try:
        before = load_previous(previous) if previous is not None else None
    except PreviousReportError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_UNUSABLE) from None
    return AcrossRows(spec, la_code=la, previous=before)


def _print_across_rows(console: Console, report: dict[str, Any]) -> None:
    from cld_cli.validate_across_rows import print_across_rows

    print_across_rows(console, report)


class _FindingWriter:
    """Streams findings into a spooled temporary file (memory while small, disk when large); ``finish`` returns
    the whole JSON report as bytes for ``write_report``. Nothing reaches the target until then."""

    def __init__(self) -> None:
        self.fh: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115
        self.fh.write(b'{"findings": [')
        self.first = True

    def add(self, row: int, line: int, ref: str | None, fnd: Any) -> None:
        item = {
            "row": row,
            "excel_row": line,
            "event_reference": ref,
            "field": fnd.header,
            "status": fnd.status.value,
            "validity": fnd.validity.value,
            "rule": fnd.rule,
            "message": fnd.message,
            "fix": fnd.fix,
        }
        self.fh.write((("\n" if self.first else ",\n") + json.dumps(item, ensure_ascii=False)).encode())
        self.first = False

    def finish(self, release: Release, rows: int, summary: dict[str, Any]) -> bytes:
        self.fh.write(
            (
                f'\n], "release": {json.dumps(release.value)}, "rows": {rows}, '
                f'"summary": {json.dumps(summary, ensure_ascii=False)}}}\n'
            ).encode()
        )
        self.fh.seek(0)
        data = self.fh.read()
        self.fh.close()
        return data

    def abort(self) -> None:
        self.fh.close()


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


def _release_basis_note(basis: str) -> str:
    if basis == "given":
        return ""
    if basis == "latest":
        return " (no readable period: the latest release; choose one with --release)"
    return f" (in force for the file's {basis.replace('_', ' ')}; choose another with --release)"


def _print_summary(
    console: Console,
    file: Path,
    summary: Any,
    report: dict[str, Any],
    examples: list[tuple[int, str, str, str, str]],
) -> None:
    console.print(
        f"[bold]{file.name}[/]: {summary.rows:,} rows, "
        f"[{'red' if summary.rows_with_failures else 'green'}]{summary.rows_with_failures:,} with failures[/] "
        f"({summary.failures:,} failed fields), release {summary.release.value}"
        + _release_basis_note(summary.release_basis)
    )
    read_as = report.get("read_as") or {}
    if read_as and read_as.get("described") != "UTF-8, comma separated":
        console.print(f"read as: {read_as['described']}", markup=False, highlight=False)
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
        console.print("First failing rows (Row as Excel shows it: the header is row 1):")
        for row, header, validity, rule, fix in examples:
            console.print(f"  Row {row}: {header} - {validity} [{rule}]", markup=False, highlight=False)
            console.print(f"    fix: {fix}", markup=False, highlight=False)
    if report["unchecked_values"]:
        console.print("[yellow]Values that could not be checked[/] (code list not fully known for this release):")
        for header, info in report["unchecked_values"].items():
            console.print(f"  {header}: {info['count']:,} values")
        console.print("  Load the official lists with --codelists FILE to check them.")
