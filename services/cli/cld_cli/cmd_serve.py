"""``cld serve <service>``: run one service as its own process (uvicorn), with /metrics and /health.

The service's composition root module (``composition_root(name)``: ``cld_<name>.service``, or
``cld_submission.entrypoints.app`` for the layered submission package) exposes ``create_app(settings:
<Name>Settings)``. The settings class is read from that annotation and built from the environment (``CLD_*``), so this
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


COMPOSITION_ROOTS: dict[str, str] = {"submission": "cld_submission.entrypoints.app"}
"""Services whose composition root is not ``cld_<name>.service``."""


def composition_root(name: str) -> str:
    """The module holding ``create_app`` of service ``name``."""
    return COMPOSITION_ROOTS.get(name, f"cld_{name}.service")


def load_service(name: str, *, port: int | None = None, host: str | None = None) -> tuple[Any, Any]:
    """Import the service's composition root (``composition_root``), build its settings from the environment,
    return (app, settings).

    Raises :class:`~cld_runtime.settings.StartupError` (one line naming the setting, never its value) for any
    configuration error: invalid settings, a bad tenants registry, a bad key, a file that cannot be read."""
    module = importlib.import_module(composition_root(name))
    create_app = module.create_app
    settings_cls = typing.get_type_hints(create_app)["settings"]
    overrides: dict[str, Any] = {}
    if port is not None:
        overrides["http_port"] = port
    if host is not None:
        overrides["http_host"] = host
    try:
        settings = settings_cls(**overrides)
    except _CONFIG_ERRORS as exc:
        raise _startup_error(exc, settings_cls, None) from None
    try:
        return create_app(settings), settings
    except _CONFIG_ERRORS as exc:
        raise _startup_error(exc, settings_cls, settings) from None


# What a composition root raises for a configuration the operator can fix. pydantic's ValidationError and
# pydantic-settings' SettingsError are ValueErrors, so are TenancyError, PseudonymKeyError, SharingPolicyError,
# LookupFileError and the dead-letter key's errors; ssl.SSLError is an OSError.
_CONFIG_ERRORS = (ValueError, OSError)


def _env_names(cls: type[Any]) -> dict[str, str]:
    """Field name (and alias) -> the environment variable that sets it, for a pydantic-settings class."""
    from pydantic import AliasChoices

    prefix = str(cls.model_config.get("env_prefix") or "")
    names: dict[str, str] = {}
    for field_name, info in cls.model_fields.items():
        alias = info.validation_alias if info.validation_alias is not None else info.alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias] if isinstance(alias, str) else []
        aliases = [str(choice) for choice in choices if isinstance(choice, str)]
        env = (aliases[0] if aliases else f"{prefix}{field_name}").upper()
        names[field_name] = env
        names.update(dict.fromkeys(aliases, env))
    return names


def _settings_class(title: str) -> type[Any] | None:
    """The pydantic-settings class called ``title`` (a ValidationError's title), among those imported."""
    from pydantic_settings import BaseSettings

    todo: list[type[Any]] = [BaseSettings]
    while todo:
        cls = todo.pop()
        if cls.__name__ == title:
            return cls
        todo.extend(cls.__subclasses__())
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _startup_error(exc: Exception, settings_cls: type[Any], settings: Any) -> Exception:
    """One line naming the setting at fault, never its value (values may be secrets); the exception's own text
    only where it is written not to carry values (cld_runtime, cld_pseudonymisation messages)."""
    import re

    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from cld_governance.sharing import SharingPolicyError
    from cld_governance.tenancy import ENV_TENANTS_FILE, TenancyError
    from cld_runtime.settings import StartupError

    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, ValidationError):  # messages of pydantic never quote the input; its str() does
        cls = _settings_class(exc.title)
        names = _env_names(cls) if cls is not None else {}
        problems = []
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            msg = str(error["msg"]).removeprefix("Value error, ")
            if error["loc"]:
                field = str(error["loc"][0])
                problems.append(f"{names.get(field, field.upper())} is invalid: {msg}")
            else:  # a model validator's message names fields: name their variables instead
                problems.append(re.sub(r"\b[a-z][a-z0-9_]*\b", lambda m: names.get(m.group(0), m.group(0)), msg))
        return StartupError(_one_line("; ".join(problems) or f"invalid settings ({exc.title})"))
    if isinstance(exc, SettingsError):  # 'error parsing value for field "x" from source "EnvSettingsSource"'
        match = re.search(r'field "(\w+)"', str(exc))
        parsed = match.group(1) if match else None
        if parsed is not None:
            name = _env_names(settings_cls).get(parsed, parsed.upper())
            return StartupError(f"{name} cannot be parsed (a list or object setting is JSON)")
        return StartupError(_one_line(f"a setting cannot be parsed ({exc})"))
    if isinstance(exc, OSError):
        setting = None
        if settings is not None:  # the file setting at fault: the one named by the error, else an unreadable one
            names = _env_names(type(settings))
            files = {f: v for f in type(settings).model_fields if isinstance(v := getattr(settings, f, None), Path)}
            named = [f for f, v in files.items() if exc.filename is not None and str(v) == str(exc.filename)]
            unreadable = [f for f, v in files.items() if not (v.is_file() or v.is_dir())]
            if named or unreadable:
                setting = names[(named or unreadable)[0]]
        cause = f"{type(exc).__name__}: {exc.strerror}" if exc.strerror else type(exc).__name__
        if setting is None:
            return StartupError(f"a file named in the settings cannot be used ({cause})")
        return StartupError(f"{setting} cannot be read ({cause})")
    text = _one_line(str(exc))
    if isinstance(exc, SharingPolicyError) and "CLD_" not in text:
        return StartupError(f"CLD_SHARING_POLICY_FILE: {text}")
    if type(exc).__name__ == "LookupFileError" and "CLD_" not in text:  # cld_pseudonymisation's (not imported here)
        return StartupError(f"CLD_POSTCODE_LOOKUP_FILE: {text}")
    if isinstance(exc, TenancyError) and ENV_TENANTS_FILE not in text and "CLD_" not in text:
        return StartupError(f"{ENV_TENANTS_FILE}: {text}")
    if "CLD_" in text:
        return StartupError(text)
    return StartupError(f"invalid configuration ({type(exc).__name__}: {text})")


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
