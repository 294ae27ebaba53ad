"""``cld transparency``: the privacy-notice section about an LA's CLD return to NHS England (issue 6 section 3)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer


def register(app: typer.Typer) -> None:
    app.command("transparency")(transparency)


def transparency(
    la: Annotated[str, typer.Option("--la", help="The LA's 3-digit code, e.g. 318.")],
    fmt: Annotated[
        Literal["md", "html"], typer.Option("--format", help="md (Markdown) or html (a self-contained fragment).")
    ] = "md",
    out: Annotated[Path | None, typer.Option("--out", help="Write here (default: standard output).")] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Sharing policy JSON (default: the packaged policy).")
    ] = None,
    tenants: Annotated[
        Path | None, typer.Option("--tenants", help="Tenants registry, for the LA's name (default: none).")
    ] = None,
    la_name: Annotated[str | None, typer.Option("--la-name", help="The LA's name when there is no registry.")] = None,
    standalone: Annotated[bool, typer.Option("--standalone", help="HTML: a whole page, not a fragment.")] = False,
) -> None:
    """Write the plain-English section an LA puts in its privacy notice about its CLD return to NHS England.

    Generated from the CLD specification data (every data item, grouped) and the sharing policy (purposes,
    legal basis, onward use); states that the right to object and the national data opt-out do not apply.
    Review it with your data protection officer before publishing.
    """
    from cld_cli.transparency import build_notice, render
    from cld_governance.loaders import load_policy, load_registry
    from cld_governance.sharing import SharingPolicyError
    from cld_governance.tenancy import TenancyError

    if not re.fullmatch(r"[0-9]{3}", la):
        _fail("--la must be a 3-digit LA code, e.g. 318")
    name = la_name
    try:
        the_policy = load_policy(policy)
        if tenants is not None:
            tenant = load_registry(tenants).find_tenant(la)
            if tenant is None:
                _fail(f"LA {la} is not a tenant in {tenants.name}")
            name = la_name or tenant.name
    except (SharingPolicyError, TenancyError) as exc:
        _fail(str(exc))
    text = render(build_notice(la_code=la, la_name=name, policy=the_policy), fmt, standalone=standalone)
    if out is None:
        sys.stdout.write(text)
        return
    from cld_runtime.files import FileWriteError, write_text

    try:
        write_text(out, text)  # private, exclusive, never through a symlink (cld_runtime.files)
    except FileWriteError as exc:
        _fail(str(exc))
    typer.echo(f"Wrote {out} ({fmt}).", err=True)


def _fail(message: str) -> NoReturn:
    typer.echo(f"cld transparency: {message}", err=True)
    raise typer.Exit(code=2)
