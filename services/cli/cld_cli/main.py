"""The ``cld`` command line: one entry point, one module per command group.

Each command module registers itself on ``app``; heavy imports stay inside commands so ``cld --help`` is fast.
"""

from __future__ import annotations

import importlib
import os

import typer

app = typer.Typer(
    help="Adult Social Care Client Level Data (CLD): validate, generate, preview, serve and submit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
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
