"""Loading and saving the governance data at the edge: the tenants registry file and the sharing policy file.

``cld_governance.tenancy`` and ``cld_governance.sharing`` are pure (models and decisions over plain data); this
module is the only one of the package that reads the environment or touches files (an import-linter contract
keeps it so). Errors name the file and the problem, never a key.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cld_governance.sharing import SharingPolicy, SharingPolicyError, parse_policy
from cld_governance.tenancy import (
    ENV_TENANCY_MODE,
    ENV_TENANTS_FILE,
    Registry,
    TenancyError,
    TenancyMode,
    open_registry,
)

_log = logging.getLogger("cld.tenancy")


def load_registry(path: Path) -> Registry:
    """Read and check a registry file. Errors name the file and the problem, never a key."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TenancyError(f"cannot read tenants registry {path.name}: {type(exc).__name__}") from exc
    if not isinstance(data, dict):
        raise TenancyError(f"tenants registry {path.name} must be a JSON object")
    if "open_mode" in data:
        raise TenancyError("open mode is a deployment setting (CLD_TENANCY_MODE), not a registry entry")
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'registry'}: {e['msg']}" for e in exc.errors())
        raise TenancyError(f"tenants registry {path.name} is invalid: {problems}") from exc


def resolve_registry(path: Path | None, mode: TenancyMode = TenancyMode.REQUIRED) -> Registry:
    """The registry a process runs with: the file when given; else open mode if (and only if) asked for."""
    if path is not None:
        registry = load_registry(path)
        _log.info(
            "tenants registry loaded",
            extra={"tenants": len(registry.tenants), "sources": len(registry.sources)},
        )
        return registry
    if mode is TenancyMode.OPEN:
        _log.warning(
            "TENANCY OPEN MODE: no tenants registry; every caller may submit for every LA. Never use with real data.",
            extra={"tenancy_mode": mode.value},
        )
        return open_registry()
    raise TenancyError(
        f"no tenants registry: set {ENV_TENANTS_FILE} to a registry file (see deploy/config/tenants.example.json), "
        f"or {ENV_TENANCY_MODE}=open for a local demo"
    )


def registry_from_environ(environ: dict[str, str] | None = None) -> Registry:
    """:func:`resolve_registry` from ``CLD_TENANTS_FILE`` / ``CLD_TENANCY_MODE`` (for the CLI and scripts)."""
    env = os.environ if environ is None else environ
    path = env.get(ENV_TENANTS_FILE) or None
    try:
        mode = TenancyMode(env.get(ENV_TENANCY_MODE) or TenancyMode.REQUIRED.value)
    except ValueError:
        raise TenancyError(f"{ENV_TENANCY_MODE} must be 'required' or 'open'") from None
    return resolve_registry(Path(path) if path else None, mode)


def save_registry(registry: Registry, path: Path) -> None:
    """Write the registry atomically (temp file + rename), readable by its owner only (it holds key hashes)."""
    if registry.open_mode:
        raise TenancyError("an open-mode registry is never written to a file")
    text = json.dumps(registry.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_policy(path: Path | None = None) -> SharingPolicy:
    """The policy in ``path``, or the packaged default (``cld_governance/data/sharing-policy.json``) when None."""
    if path is None:
        return default_policy()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SharingPolicyError(f"cannot read sharing policy {path.name}: {type(exc).__name__}") from exc
    return parse_policy(data, name=f"sharing policy {path.name}")


@cache
def default_policy() -> SharingPolicy:
    text = resources.files("cld_governance").joinpath("data/sharing-policy.json").read_text(encoding="utf-8")
    return parse_policy(json.loads(text), name="packaged sharing policy")
