"""``cld serve <service>``: run one service as its own process (uvicorn), with /metrics and /health.

The service module ``cld_<name>.service`` exposes ``create_app(settings: <Name>Settings)``: the composition
root. The settings class is read from that annotation and built from the environment (``CLD_*``), so this
command knows nothing about any service's settings. Several processes of one service share the work through
their Kafka consumer group.
"""

from __future__ import annotations

import importlib
import typing
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer


class ServiceName(StrEnum):
    INGEST = "ingest"
    VALIDATION = "validation"
    PSEUDONYMISATION = "pseudonymisation"
    SUBMISSION = "submission"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("asyncapi")(asyncapi)


def asyncapi(
    out: Annotated[Path | None, typer.Option("--out", help="Write here (default: stdout).")] = None,
) -> None:
    """Write the AsyncAPI document of every service's topics (docs/asyncapi.yaml), generated from the code."""
    from cld_cli.asyncapi_doc import asyncapi_yaml

    text = asyncapi_yaml()
    if out is None:
        typer.echo(text)
    else:
        from cld_runtime.files import FileWriteError, write_text

        try:
            write_text(out, text)
        except FileWriteError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


def load_service(name: str, *, port: int | None = None, host: str | None = None) -> tuple[Any, Any]:
    """Import ``cld_<name>.service``, build its settings from the environment, return (app, settings)."""
    module = importlib.import_module(f"cld_{name}.service")
    create_app = module.create_app
    settings_cls = typing.get_type_hints(create_app)["settings"]
    overrides: dict[str, Any] = {}
    if port is not None:
        overrides["http_port"] = port
    if host is not None:
        overrides["http_host"] = host
    settings = settings_cls(**overrides)
    return create_app(settings), settings


def serve(
    service: Annotated[ServiceName, typer.Argument(help="Which service to run.")],
    port: Annotated[int | None, typer.Option("--port", "-p", help="HTTP port (default: the service's)")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Bind address (default 127.0.0.1).")] = None,
) -> None:
    """Run one CLD service (its Kafka consumers/producers and its HTTP endpoints) until SIGINT/SIGTERM."""
    import uvicorn

    from cld_runtime.files import private_umask
    from cld_runtime.settings import StartupError

    private_umask()  # every file a service writes is 0600, every folder 0700 (issue 10)
    try:
        app, settings = load_service(service.value, port=port, host=host)
    except StartupError as exc:  # one clear line and a non-zero exit, never a traceback
        typer.echo(f"cld serve {service.value}: cannot start: {exc}", err=True)
        raise typer.Exit(1) from None
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # cld_runtime.configure_logging already routes uvicorn's logs as JSON lines
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=20,
    )
