"""The `cld` command line."""

import typer

app = typer.Typer(help="Adult Social Care Client Level Data tools.")
