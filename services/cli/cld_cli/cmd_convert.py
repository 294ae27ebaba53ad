"""``cld convert FILE --to r2 --out NEW.csv``: a Release 1 file's coded values as Release 2 labels.

Each coded value is mapped through the spec's shared keys (``cld_schemas.releasemap``): a Release 1 label becomes
the one Release 2 value with the same meaning. Nothing is guessed: a value with no counterpart, or with several,
is left as it is and reported (field, value, rows, why), and the exit code says so. Every other cell, every
column (including ones the spec does not know) and the row order are copied unchanged. Load the official lists
(or NHS England's R2 mapping workbook) with ``--codelists`` so more values can be mapped.

Exit codes: 0 every coded value was mapped (or already of the target release); 1 some could not be (the file is
written, with those values unchanged); 2 the input or the output cannot be used.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cld_cli.cmd_validate import load_spec_with_overrides
from cld_schemas.csvfile import CLDFileError, read_header
from cld_schemas.releasemap import Unmapped, release_mappings
from cld_schemas.spec import CodeListError, Release, Spec

EXIT_OK, EXIT_UNMAPPED, EXIT_UNUSABLE = 0, 1, 2


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)


def convert(
    file: Annotated[Path, typer.Argument(help="The LA's CLD file (CSV with the spec's column headers).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the converted CSV.")],
    to: Annotated[Release, typer.Option("--to", help="Release to convert the coded values to.")] = Release.R2,
    codelists: Annotated[
        Path | None,
        typer.Option(
            "--codelists",
            help="Official code lists (override layout, or NHS England's R2 mapping workbook) to map with.",
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write what was mapped and what could not be as JSON here.")
    ] = None,
) -> None:
    """Map a file's coded values from one release to the other through the spec's shared meanings."""
    err = Console(stderr=True, soft_wrap=True)  # an error line is never cut mid-path
    console = Console()
    source = Release.R1 if to is Release.R2 else Release.R2
    try:
        spec = load_spec_with_overrides(codelists)
        result = convert_file(file, out, spec=spec, source=source, target=to)
    except (CodeListError, CLDFileError, ConvertError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_UNUSABLE) from None
    if report is not None:
        try:
            _write_atomic(report, json.dumps(result, indent=2, ensure_ascii=False).encode())
        except ConvertError as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(EXIT_UNUSABLE) from None
    _print(console, file, out, result)
    raise typer.Exit(EXIT_UNMAPPED if result["unmapped"] else EXIT_OK)


class ConvertError(ValueError):
    """The input or output cannot be used; the message carries no value from the file."""


def convert_file(src: Path, dst: Path, *, spec: Spec, source: Release, target: Release) -> dict[str, Any]:
    """Write ``src`` to ``dst`` with coded values mapped; returns the report (counts per field and value)."""
    mappings = release_mappings(spec, source=source, target=target)
    changed: Counter[tuple[str, str, str]] = Counter()
    unmapped: Counter[tuple[str, str, Unmapped]] = Counter()
    first_rows: dict[tuple[str, str], list[int]] = {}
    rows = 0
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    from cld_schemas.lafile import open_la_file

    try:
        # Any file an LA has (UTF-8 or Windows-1252, , ; tab |, .xlsx); the result is UTF-8, comma separated.
        with open_la_file(src, spec=spec) as la_file:
            reader = csv.reader(la_file.lines, strict=True, delimiter=la_file.format.delimiter)
            try:
                head = next(reader)
            except StopIteration:
                raise ConvertError(f"{src.name}: the file is empty") from None
            header = read_header(head, spec=spec)
            if sum(1 for c in header.columns if c) < 10:
                raise ConvertError(f"{src.name}: not a CLD file (too few of the specification's column headers)")
            writer.writerow(head)
            cols = [(i, mappings[name]) for i, name in enumerate(header.columns) if name in mappings]
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                rows += 1
                for i, m in cols:
                    if i >= len(cells):
                        continue
                    value = cells[i].strip()
                    if not value:
                        continue
                    new, why = m.map(value)
                    if why is not None:
                        unmapped[(m.field.header, value, why)] += 1
                        first_rows.setdefault((m.field.header, value), [])
                        if len(first_rows[(m.field.header, value)]) < 5:
                            first_rows[(m.field.header, value)].append(rows)
                    elif new != value:
                        changed[(m.field.header, value, new)] += 1
                        cells[i] = new
                writer.writerow(cells)
    except UnicodeDecodeError:
        raise ConvertError(f"{src.name} is not UTF-8 text: save it as UTF-8 and try again") from None
    except csv.Error as exc:
        raise ConvertError(
            f"{src.name}: CSV structure broken near line {reader.line_num} ({exc}); "
            "look for a stray double quote in that line"
        ) from None
    except OSError as exc:
        raise ConvertError(f"cannot read {src.name}: {exc.strerror or type(exc).__name__}") from None
    _write_atomic(dst, buf.getvalue().encode("utf-8"))
    pii = {f.header for f in spec.fields if f.pii}
    return {
        "from": source.value,
        "to": target.value,
        "rows": rows,
        "mapped": [
            {"field": f, "from": v, "to": n, "count": c} for (f, v, n), c in sorted(changed.items(), key=_by_field)
        ],
        "unmapped": [
            {
                "field": f,
                "value": v if f not in pii else "N/A - PID",
                "why": why.value,
                "count": c,
                "first_rows": first_rows[(f, v)],
            }
            for (f, v, why), c in sorted(unmapped.items(), key=lambda kv: (kv[0][0], -kv[1]))
        ],
    }


def _by_field(item: tuple[tuple[str, str, str], int]) -> tuple[str, int]:
    return item[0][0], -item[1]


def _write_atomic(path: Path, data: bytes) -> None:
    """Through the shared safe writer (``cld_runtime.files``), its errors as this command's."""
    from cld_runtime.files import FileWriteError, write_bytes

    try:
        write_bytes(path, data)
    except FileWriteError as exc:
        raise ConvertError(str(exc)) from None
    except OSError as exc:
        raise ConvertError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None


def _print(console: Console, file: Path, out: Path, result: dict[str, Any]) -> None:
    changed = sum(m["count"] for m in result["mapped"])
    left = sum(u["count"] for u in result["unmapped"])
    console.print(
        f"[bold]{file.name}[/] -> {out}: {result['rows']:,} rows, {changed:,} coded values mapped "
        f"{result['from']} -> {result['to']}, "
        f"[{'red' if left else 'green'}]{left:,} could not be mapped[/]"
    )
    if result["mapped"]:
        t = Table(title="Mapped")
        for col in ("Field", "From", "To", "Count"):
            t.add_column(col, justify="right" if col == "Count" else "left")
        for m in result["mapped"][:30]:
            t.add_row(m["field"], m["from"], m["to"], f"{m['count']:,}")
        console.print(t)
    if result["unmapped"]:
        t = Table(title="Not mapped (left as they were)")
        for col in ("Field", "Value", "Why", "Count", "First rows"):
            t.add_column(col, justify="right" if col == "Count" else "left")
        for u in result["unmapped"][:50]:
            t.add_row(u["field"], u["value"], u["why"], f"{u['count']:,}", ", ".join(map(str, u["first_rows"])))
        console.print(t)
        console.print(
            "Correct these at source, or load the official lists (or NHS England's R2 mapping workbook) with "
            "--codelists and convert again."
        )
