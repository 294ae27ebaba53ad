"""A tenants registry for service tests, built in code (docs/governance.md: "Unit tests build registries in code").

LAs 318 and 319 belong to the hub ``north``, 102 too. Sources (each with a fresh API key):

| source | kind | LAs |
|---|---|---|
| ``case-system`` | la_system | 318 |
| ``other-la-system`` | la_system | 319 |
| ``care-provider`` | provider | 318, 319 |
| ``regional-hub`` | hub | 318, 319, 102 (the default caller of the service tests) |
| ``kafka-only`` | la_system | 318, no HTTP key (publishes to the raw topic only) |

Operators (each with a fresh operator key): ``la-318`` (la_operator of 318), ``la-319`` (la_operator of 319),
``hub-north`` (hub_operator of the hub ``north``: 318, 319, 102).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cld_governance.loaders import save_registry
from cld_governance.tenancy import (
    Operator,
    OperatorRole,
    Registry,
    Source,
    SourceKind,
    Tenant,
    generate_api_key,
    hash_api_key,
)

DEFAULT_SOURCE = "regional-hub"


@dataclass(frozen=True)
class Tenancy:
    registry: Registry
    keys: dict[str, str] = field(default_factory=dict)
    operator_keys: dict[str, str] = field(default_factory=dict)

    def operator_auth(self, operator: str) -> dict[str, str]:
        """Request headers authenticating as the operator ``operator``."""
        return {"Authorization": f"Bearer {self.operator_keys[operator]}"}

    def auth(self, source_id: str = DEFAULT_SOURCE) -> dict[str, str]:
        """Request headers authenticating as ``source_id``."""
        return {"Authorization": f"Bearer {self.keys[source_id]}"}

    def write(self, directory: Path) -> tuple[Path, Path]:
        """The registry file (for ``CLD_TENANTS_FILE``) and a 0600 keys file, as ``cld tenants init`` writes."""
        reg = directory / "tenants.json"
        save_registry(self.registry, reg)
        keys = directory / "source-keys.json"
        fd = os.open(keys, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.keys, fh)
        return reg, keys


def _source(sid: str, kind: SourceKind, las: tuple[str, ...], key: str | None, **extra: str) -> Source:
    return Source(
        id=sid,
        name=sid,
        kind=kind,
        la_codes=las,
        key_hash=hash_api_key(key) if key else None,
        **extra,
    )


def make_tenancy() -> Tenancy:
    keys = {s: generate_api_key() for s in ("case-system", "other-la-system", "care-provider", "regional-hub")}
    op_keys = {o: generate_api_key() for o in ("la-318", "la-319", "hub-north")}
    registry = Registry(
        tenants=(
            Tenant(la_code="318", name="Example Borough Council", hub_id="north"),
            Tenant(la_code="319", name="Example County Council", hub_id="north"),
            Tenant(la_code="102", name="Example City Council", hub_id="north"),
        ),
        sources=(
            _source("case-system", SourceKind.LA_SYSTEM, ("318",), keys["case-system"]),
            _source("other-la-system", SourceKind.LA_SYSTEM, ("319",), keys["other-la-system"]),
            _source(
                "care-provider",
                SourceKind.PROVIDER,
                ("318", "319"),
                keys["care-provider"],
                cqc_location_id="1-000000001",
            ),
            _source("regional-hub", SourceKind.HUB, ("318", "319", "102"), keys["regional-hub"], hub_id="north"),
            _source("kafka-only", SourceKind.LA_SYSTEM, ("318",), None),
        ),
        operators=(
            Operator(
                name="la-318",
                role=OperatorRole.LA_OPERATOR,
                la_codes=("318",),
                key_hash=hash_api_key(op_keys["la-318"]),
            ),
            Operator(
                name="la-319",
                role=OperatorRole.LA_OPERATOR,
                la_codes=("319",),
                key_hash=hash_api_key(op_keys["la-319"]),
            ),
            Operator(
                name="hub-north",
                role=OperatorRole.HUB_OPERATOR,
                hub_id="north",
                la_codes=("318", "319", "102"),
                key_hash=hash_api_key(op_keys["hub-north"]),
            ),
        ),
    )
    return Tenancy(registry, keys, op_keys)
