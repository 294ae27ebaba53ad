"""The ``cld`` command line: one entry point, one module per command group.

Each command module registers itself on ``app``; heavy imports stay inside commands so ``cld --help`` is fast.
"""

from __future__ import annotations

import importlib
import os
from typing import Annotated

import typer

app = typer.Typer(
    help="Adult Social Care Client Level Data (CLD): validate, generate, preview, serve and submit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def version_text() -> str:
    """``cld <version> (spec data <version>)``: the installed package's version and the spec data's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("cld-mesh")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
        ours = "unknown"
    from cld_schemas.spec import load_spec

    return f"cld {ours} (spec data {load_spec().data_version})"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version of cld and its spec data."
        ),
    ] = False,
) -> None:
    """Adult Social Care Client Level Data (CLD) tools. Run `cld COMMAND --help` for each command."""
    # Private by default (issue 10): every file or folder a command creates is 0600 / 0700
    # (``cld_runtime.files.PRIVATE_UMASK``; not imported here so that ``cld --help`` stays fast).
    os.umask(0o077)


# Command modules (each defines ``register(app)``). Listed here so the composition is explicit.
_COMMAND_MODULES = (
    "cld_cli.cmd_validate",
    "cld_cli.cmd_generate",
    "cld_cli.cmd_preview",
    "cld_cli.cmd_serve",
    "cld_cli.cmd_submission",
    "cld_cli.cmd_transparency",
    "cld_cli.cmd_spec",
    "cld_cli.cmd_tenants",
    "cld_cli.cmd_demo",
    "cld_cli.cmd_convert",
)

for _mod in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(_mod)
    except ModuleNotFoundError as _exc:  # a command group not written yet
        if _exc.name != _mod:
            raise
        continue
    _module.register(app)


def main() -> None:  # pragma: no cover - console entry point
    app()
