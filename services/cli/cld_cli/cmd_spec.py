"""``cld spec``: what the specification data holds, what it does not know, and a code-list template for LAs."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cld_schemas.spec import Release, load_spec

spec_app = typer.Typer(
    help="Show the CLD specification data: fields, code lists, rules and known gaps.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(spec_app, name="spec")


@spec_app.command("fields")
def fields(release: Annotated[Release, typer.Option("--release", "-r")] = Release.R2) -> None:
    """Every field in file order with its header, name, format and code-list completeness."""
    spec = load_spec()
    t = Table(title=f"CLD fields ({spec.releases[release].label}, spec data {spec.data_version})")
    for col in ("#", "Header", "Name", "Group", "Format", "Code list", "PII"):
        t.add_column(col)
    for f in spec.fields:
        cl = f.code_list(release)
        t.add_row(
            str(f.order),
            f.header,
            f.name,
            f.group,
            f.format + (" (inferred)" if f.format_inferred else ""),
            f"{cl.completeness.value} ({len(cl.values)})" if cl else "",
            "yes" if f.pii else "",
        )
    Console().print(t)


@spec_app.command("rules")
def rules() -> None:
    """The validation rules: stable id, DQ validity, explanation and the spec/guidance rule cited."""
    spec = load_spec()
    t = Table(title="Validation rules")
    for col in ("Id", "Validity", "Explanation", "Cites"):
        t.add_column(col)
    for r in spec.rules:
        t.add_row(r.id, r.validity.value, r.explanation, r.cites)
    Console().print(t)
    Console().print(
        "Status rules (why a field is Mandatory) have ids like S-EVENT-END-NOT-SERVICE: see `cld spec fields`."
    )


@spec_app.command("gaps")
def gaps() -> None:
    """What the specification data does not know (so what this tool cannot check)."""
    spec = load_spec()
    console = Console()
    for g in spec.gaps:
        console.print(f"- {g}")
    for rel, info in spec.releases.items():
        console.print(f"[bold]{info.label}[/] ({rel.value}): {info.note}")
    sel = spec.release_selection
    if sel is not None:
        console.print(f"[bold]Which release a record is checked against[/]: {sel.rule}")
        for c in sel.cut_overs:
            exact = "exact" if c.exact else "NOT exact: a documented best estimate"
            console.print(
                f"  {spec.releases[c.release].label} from {c.from_:%d/%m/%Y} ({exact}). Source: {c.source} {c.note}",
                highlight=False,
            )


@spec_app.command("codelists")
def codelists(
    release: Annotated[Release, typer.Option("--release", "-r")] = Release.R2,
    out: Annotated[Path | None, typer.Option("--out", help="Write CSV here (default: standard output).")] = None,
) -> None:
    """The code lists as a CSV in the override format (field, release, value, key, completeness).

    Correct or complete it from the official specification workbook, then pass it to
    `cld validate --codelists FILE`: each field named in the file is replaced whole and treated as complete.
    """
    from cld_runtime.files import AtomicFile, FileWriteError

    spec = load_spec()
    target: AtomicFile | None = None
    try:
        target = AtomicFile(out, newline="") if out else None  # private, exclusive, never through a symlink
        fh = target.file if target else sys.stdout
        w = csv.writer(fh)
        w.writerow(["field", "release", "value", "key", "group", "completeness"])
        for f in spec.fields:
            cl = f.code_list(release)
            if cl is None:
                continue
            if not cl.values:
                w.writerow([f.header, release.value, "", "", "", cl.completeness.value])
            for v in cl.values:
                w.writerow([f.header, release.value, v.value, v.key, v.group or "", cl.completeness.value])
        if target is not None:
            target.commit()
    except FileWriteError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        from cld_runtime.files import os_reason

        typer.echo(f"error: writing {out or 'standard output'} failed: {os_reason(exc)}", err=True)
        raise typer.Exit(2) from None
    finally:
        if target is not None:
            target.abort()  # a no-op after commit
