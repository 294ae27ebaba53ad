"""``cld tenants``: the registry of LAs, source systems and operators, both with hashed API keys (issue 6 section 1).

A new key (a source's or an operator's) is printed once, on standard output and nowhere else (messages go to
standard error, so ``KEY=$(cld tenants add-source ...)`` captures just the key); the registry keeps only its
SHA-256.
``check-key`` reads the key from standard input, never from the command line (argv is visible to other users
in the process list and lands in shell history).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from cld_governance.tenancy import Registry

tenants_app = typer.Typer(
    help="Tenants (LAs), source systems and operators of this deployment, and source API keys.",
    no_args_is_help=True,
)

RegistryOpt = Annotated[
    Path,
    typer.Option("--registry", envvar="CLD_TENANTS_FILE", help="The registry JSON file (env CLD_TENANTS_FILE)."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(tenants_app, name="tenants")


def _fail(message: str) -> NoReturn:
    typer.echo(f"cld tenants: {message}", err=True)
    raise typer.Exit(code=2)


def _load(path: Path, *, create: bool = False) -> Registry:
    from cld_governance.loaders import load_registry
    from cld_governance.tenancy import Registry, TenancyError

    if create and not path.exists():
        return Registry()
    try:
        return load_registry(path)
    except TenancyError as exc:
        _fail(str(exc))


def _save(registry: Registry, path: Path) -> None:
    from cld_governance.loaders import save_registry
    from cld_runtime.files import FileWriteError, check_target, os_reason, private_dir

    try:
        private_dir(path.parent)  # as before: the registry's folder is created (0700) when missing
        check_target(path)  # never over a symlink, FIFO, device or folder; the folder must exist
        save_registry(registry, path)
    except FileWriteError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write {path}: {os_reason(exc)}")


@tenants_app.command("add-tenant")
def add_tenant(
    registry: RegistryOpt,
    la: Annotated[str, typer.Option("--la", help="The LA's 3-digit code.")],
    name: Annotated[str, typer.Option("--name", help="The LA's name (shown in transparency material).")],
    hub: Annotated[str | None, typer.Option("--hub", help="The regional hub serving this LA.")] = None,
) -> None:
    """Add an LA served by this deployment (creates the registry file when missing)."""
    from pydantic import ValidationError

    from cld_governance.tenancy import TenancyError, Tenant, with_tenant

    reg = _load(registry, create=True)
    try:
        reg = with_tenant(reg, Tenant(la_code=la, name=name, hub_id=hub))
    except (TenancyError, ValidationError) as exc:
        _fail(_problem(exc))
    _save(reg, registry)
    typer.echo(f"Added LA {la}.", err=True)


@tenants_app.command("add-source")
def add_source(
    registry: RegistryOpt,
    source_id: Annotated[str, typer.Option("--id", help="Stable id of the source system (lower case).")],
    kind: Annotated[str, typer.Option("--kind", help="la_system, provider or hub.")],
    la: Annotated[list[str], typer.Option("--la", help="An LA it may submit for (repeat for several).")],
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    cqc_location_id: Annotated[
        str | None, typer.Option("--cqc-location-id", help="For providers: CQC location id.")
    ] = None,
    hub: Annotated[str | None, typer.Option("--hub", help="For hub sources: the hub id.")] = None,
    release: Annotated[
        str | None,
        typer.Option(
            "--release",
            help="r1 or r2: check this source's records against that release (a system not yet moved to "
            "Release 2). Default: the release in force for each record's reporting period.",
        ),
    ] = None,
) -> None:
    """Add a source system and print its new API key ONCE (standard output). Only the key's hash is stored."""
    from cld_governance.tenancy import SourceKind, TenancyError, with_new_source
    from cld_schemas.spec import Release

    try:
        source_release = Release(release.strip().lower()) if release else None
    except ValueError:
        _fail("--release must be r1 or r2")

    try:
        source_kind = SourceKind(kind)
    except ValueError:
        _fail("--kind must be one of: " + ", ".join(k.value for k in SourceKind))
    reg = _load(registry)
    try:
        reg, key = with_new_source(
            reg,
            source_id=source_id,
            kind=source_kind,
            la_codes=la,
            name=name,
            cqc_location_id=cqc_location_id,
            hub_id=hub,
            release=source_release,
        )
    except TenancyError as exc:
        _fail(str(exc))
    _save(reg, registry)
    typer.echo(f"Added source {source_id!r}. Its API key follows; it is shown only now.", err=True)
    sys.stdout.write(key + "\n")


@tenants_app.command("rotate-key")
def rotate_key(
    registry: RegistryOpt,
    source_id: Annotated[str, typer.Option("--id", help="The source whose key to replace.")],
) -> None:
    """Replace a source's API key (the old one stops working) and print the new key ONCE."""
    from cld_governance.tenancy import TenancyError, with_rotated_key

    try:
        reg, key = with_rotated_key(_load(registry), source_id)
    except TenancyError as exc:
        _fail(str(exc))
    _save(reg, registry)
    typer.echo(f"New key for source {source_id!r} follows; it is shown only now.", err=True)
    sys.stdout.write(key + "\n")


@tenants_app.command("add-operator")
def add_operator(
    registry: RegistryOpt,
    name: Annotated[str, typer.Option("--name", help="The operator's user name.")],
    role: Annotated[str, typer.Option("--role", help="la_operator or hub_operator.")],
    la: Annotated[list[str] | None, typer.Option("--la", help="An LA they act for (repeat).")] = None,
    hub: Annotated[str | None, typer.Option("--hub", help="hub_operator: their hub (default scope: its LAs).")] = None,
    no_key: Annotated[
        bool, typer.Option("--no-key", help="Issue no API key now (the operator cannot call the API yet).")
    ] = False,
) -> None:
    """Add an operator and print their new API key ONCE (standard output). A hub operator given no --la acts
    for every LA of their hub. The key goes in CLD_OPERATOR_KEY or a --key-file for `cld submission`."""
    from pydantic import ValidationError

    from cld_governance.tenancy import Operator, OperatorRole, TenancyError, with_operator, with_operator_key

    try:
        op_role = OperatorRole(role)
    except ValueError:
        _fail("--role must be one of: " + ", ".join(r.value for r in OperatorRole))
    reg = _load(registry)
    codes = tuple(la or ())
    if not codes and op_role is OperatorRole.HUB_OPERATOR and hub:
        codes = reg.hub_la_codes(hub)
    try:
        reg = with_operator(reg, Operator(name=name, role=op_role, la_codes=codes, hub_id=hub))
        key = None if no_key else with_operator_key(reg, name)
    except (TenancyError, ValidationError) as exc:
        _fail(_problem(exc))
    if key is not None:
        reg = key[0]
    _save(reg, registry)
    typer.echo(f"Added {op_role.value} {name!r} for LAs {', '.join(codes) or '(none)'}.", err=True)
    if key is not None:
        typer.echo(f"API key of operator {name!r} follows; it is shown only now.", err=True)
        sys.stdout.write(key[1] + "\n")


@tenants_app.command("rotate-operator-key")
def rotate_operator_key(
    registry: RegistryOpt,
    name: Annotated[str, typer.Option("--name", help="The operator whose key to issue or replace.")],
) -> None:
    """Issue or replace an operator's API key (the old one stops working) and print the new key ONCE."""
    from cld_governance.tenancy import TenancyError, with_operator_key

    try:
        reg, key = with_operator_key(_load(registry), name)
    except TenancyError as exc:
        _fail(str(exc))
    _save(reg, registry)
    typer.echo(f"New key for operator {name!r} follows; it is shown only now.", err=True)
    sys.stdout.write(key + "\n")


@tenants_app.command("list")
def list_(registry: RegistryOpt) -> None:
    """Tenants, sources (with their LAs and whether a key is issued; never the hash) and operators."""
    from rich.console import Console
    from rich.table import Table

    reg = _load(registry)
    console = Console()
    t = Table(title="Tenants")
    for col in ("LA code", "Name", "Hub"):
        t.add_column(col)
    for tenant in reg.tenants:
        t.add_row(tenant.la_code, tenant.name, tenant.hub_id or "")
    console.print(t)
    s = Table(title="Sources")
    for col in ("Id", "Kind", "LAs", "CQC location", "Key issued", "Release"):
        s.add_column(col)
    for src in reg.sources:
        s.add_row(
            src.id,
            src.kind.value,
            ", ".join(src.la_codes),
            src.cqc_location_id or "",
            "yes" if src.key_hash else "no",
            src.release.value if src.release else "by period",
        )
    console.print(s)
    o = Table(title="Operators")
    for col in ("Name", "Role", "Hub", "LAs", "Key issued"):
        o.add_column(col)
    for op in reg.operators:
        o.add_row(op.name, op.role.value, op.hub_id or "", ", ".join(op.la_codes), "yes" if op.key_hash else "no")
    console.print(o)


@tenants_app.command("check-key")
def check_key(
    registry: RegistryOpt,
    la: Annotated[str | None, typer.Option("--la", help="Also check the source may submit for this LA.")] = None,
) -> None:
    """Read an API key from standard input; say which source it is (exit 0) or that it is unknown (exit 1)."""
    from cld_governance.tenancy import authenticate_source, authorise_source

    reg = _load(registry)
    key = sys.stdin.readline().strip()
    source = authenticate_source(reg, key)
    if source is None:
        typer.echo("unknown key: no source has this key", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"source {source.id} ({source.kind.value}) may submit for LAs: {', '.join(source.la_codes)}")
    if la is not None:
        decision = authorise_source(source, la)
        if not decision.allowed:
            typer.echo(f"refused: {decision.reason.value if decision.reason else ''}: {decision.detail}", err=True)
            raise typer.Exit(code=1)
        typer.echo(f"allowed for LA {la}")


@tenants_app.command("init")
def init(
    registry: RegistryOpt,
    from_: Annotated[
        Path, typer.Option("--from", help="A registry to copy (e.g. deploy/config/tenants.example.json).")
    ],
    keys_out: Annotated[Path, typer.Option("--keys-out", help="Where to write the new keys (JSON, mode 0600).")],
    operator_keys_out: Annotated[
        Path | None,
        typer.Option(
            "--operator-keys-out", help="Also issue a key per operator, written here (JSON name -> key, mode 0600)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Copy a registry and issue a fresh key for every source: the local demo (`make run`) starts this way.

    The keys file maps source id to key, readable by its owner only; it exists so local scripts can call the
    API. With --operator-keys-out every operator gets a key too (operator name -> key), for `cld submission`
    (CLD_OPERATOR_KEY / --key-file). In a real deployment issue keys with add-source / rotate-key /
    rotate-operator-key and hand each to its owner.
    """
    from cld_governance.tenancy import with_operator_key, with_rotated_key

    for p in (registry, keys_out, operator_keys_out):
        if p is not None and p.exists() and not force:
            _fail(f"{p} exists (use --force to replace it)")
    reg = _load(from_)
    keys: dict[str, str] = {}
    for src in reg.sources:
        reg, keys[src.id] = with_rotated_key(reg, src.id)
    op_keys: dict[str, str] = {}
    if operator_keys_out is not None:
        for op in reg.operators:
            reg, op_keys[op.name] = with_operator_key(reg, op.name)
    from cld_runtime.files import FileWriteError, check_target

    for p in (keys_out, operator_keys_out):  # refused before the registry changes: no key issued and lost
        if p is not None:
            try:
                check_target(p)
            except FileWriteError as exc:
                if exc.reason != "the folder does not exist":  # created below, as before
                    _fail(str(exc))
    _save(reg, registry)
    _write_private_json(keys_out, keys)
    if operator_keys_out is not None:
        _write_private_json(operator_keys_out, op_keys)
    typer.echo(f"Wrote {registry} and {len(keys)} source keys to {keys_out}.", err=True)
    if operator_keys_out is not None:
        typer.echo(f"Wrote {len(op_keys)} operator keys to {operator_keys_out}.", err=True)


def _write_private_json(path: Path, data: dict[str, str]) -> None:
    """Keys: 0600, created exclusively next to ``path`` and renamed over it (``cld_runtime.files``), never
    written through a symlink planted at ``path``."""
    from cld_runtime.files import FileWriteError, os_reason, private_dir, write_text

    try:
        private_dir(path.parent)  # as before: the keys' folder is created (0700) when missing
        write_text(path, json.dumps(data, indent=2) + "\n")
    except FileWriteError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write {path}: {os_reason(exc)}")


def _problem(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(str(e["msg"]) for e in exc.errors())
    return str(exc)
