"""Tenants, source systems and operators of one deployment, and who may act for which local authority (LA).

A regional hub runs one deployment for several LAs. Each LA's data is confidential to it, so every entry point
asks two questions of this module: *who is calling* (:func:`authenticate_source`) and *may they act for this
LA* (:func:`authorise_source`, :func:`authorise_operator`). Everything here is pure: the registry is plain data
loaded once by the process's composition root (:func:`load_registry`, :func:`resolve_registry`) and passed in.

The registry file (``CLD_TENANTS_FILE``; example: ``deploy/config/tenants.example.json``)::

    {
      "format": "cld-tenants/1",
      "tenants":   [{"la_code": "318", "name": "...", "hub_id": "north-hub"}],
      "sources":   [{"id": "care-co", "name": "...", "kind": "provider", "la_codes": ["318"],
                     "cqc_location_id": "1-123456789", "key_hash": "sha256:<64 hex>"}],
      "operators": [{"name": "alice", "role": "la_operator", "la_codes": ["318"]}]
    }

Credentials (issue 6 section 1: "stored hashed"). A source's API key is ``cldk_`` + 32 random bytes
(:func:`generate_api_key`, ``secrets.token_urlsafe``); the file keeps only ``sha256:`` + the SHA-256 of the key.
A slow salted KDF (scrypt) exists to make *guessable* secrets such as passwords expensive to brute-force; a
256-bit random key cannot be guessed, so a fast hash is as safe and keeps the per-request cost to about a
microsecond (an HTTP ingest call authenticates on every request). The ``cldk_`` prefix lets secret scanners
spot a leaked key. Comparison is :func:`hmac.compare_digest` against every source, without an early exit.
A source with ``key_hash: null`` has no HTTP key issued (it may still be named on the raw Kafka topic, where
the Kafka principal, SASL or mTLS, is what authenticates the producer).

Operators authenticate the same way (:func:`authenticate_operator`): an operator's optional ``key_hash`` is the
SHA-256 of a key issued by ``cld tenants add-operator`` / ``rotate-operator-key``; one key identifies exactly
one principal (no key is shared between operators, between sources, or between an operator and a source).

Operators (people using the submission service): an ``la_operator`` sees, requests, approves and exports only
for their own LA codes; a ``hub_operator`` sees and operates (requests, sends) the hub's LAs but does not
approve or export: the LA is the data controller, so the decision to release its data is the LA's
(:data:`ROLE_ACTIONS`). Scopes are explicit lists in the file so the file alone says who sees what; the
registry checks that a hub operator's LAs belong to their hub.

Open mode: with no registry file a process refuses to start (:class:`TenancyMode.REQUIRED`, the default),
unless the deployment says ``CLD_TENANCY_MODE=open``; then :func:`resolve_registry` logs a warning and returns
:func:`open_registry`, in which any key authenticates as an ``open`` source allowed for every LA. A registry
file can never declare itself open.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cld_schemas.contract import is_la_code
from cld_schemas.events import DeadLetterReason
from cld_schemas.spec import Release

REGISTRY_FORMAT: Final = "cld-tenants/1"
API_KEY_PREFIX: Final = "cldk_"
API_KEY_RANDOM_BYTES: Final = 32
KEY_HASH_PREFIX: Final = "sha256:"
MAX_PRESENTED_KEY_CHARS: Final = 256
"""Longer presented keys are refused before hashing (hostile input; a real key is 48 characters)."""
ENV_TENANTS_FILE: Final = "CLD_TENANTS_FILE"
ENV_TENANCY_MODE: Final = "CLD_TENANCY_MODE"
OPEN_SOURCE_ID: Final = "open"
OPEN_OPERATOR_NAME: Final = "open"
_ANY_LA: Final = "*"

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_KEY_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


class TenancyError(ValueError):
    """The registry (or a change to it) is invalid; the message names ids and LA codes only, never a key."""


class SourceKind(StrEnum):
    LA_SYSTEM = "la_system"
    """The LA's own case-management system."""
    PROVIDER = "provider"
    """A care provider contracted by the LA; its records are part of the LA's submission (nhs-context.md)."""
    HUB = "hub"
    """A regional hub's own system submitting for the hub's LAs."""


class OperatorRole(StrEnum):
    HUB_OPERATOR = "hub_operator"
    LA_OPERATOR = "la_operator"


class OperatorAction(StrEnum):
    VIEW = "view"
    """See submissions, DQ reports and previews."""
    REQUEST_SUBMISSION = "request_submission"
    APPROVE_SUBMISSION = "approve_submission"
    SEND_SUBMISSION = "send_submission"
    """Operate the transport for an approved submission (send, retry)."""
    EXPORT = "export"
    """Ask for an export to a recipient other than NHS England (cld_governance.sharing)."""


ROLE_ACTIONS: Final[dict[OperatorRole, frozenset[OperatorAction]]] = {
    OperatorRole.LA_OPERATOR: frozenset(OperatorAction),
    # The hub processes on the LAs' behalf; releasing an LA's data (approve, export) is the controller's call.
    OperatorRole.HUB_OPERATOR: frozenset(
        {OperatorAction.VIEW, OperatorAction.REQUEST_SUBMISSION, OperatorAction.SEND_SUBMISSION}
    ),
}


class DenialReason(StrEnum):
    """Why a request was refused. Source reasons equal ``DeadLetterReason`` values (also metric labels)."""

    UNKNOWN_SOURCE = DeadLetterReason.UNKNOWN_SOURCE.value
    SOURCE_NOT_ALLOWED = DeadLetterReason.SOURCE_NOT_ALLOWED.value
    UNKNOWN_OPERATOR = "unknown_operator"
    OPERATOR_NOT_IN_SCOPE = "operator_not_in_scope"
    ACTION_NOT_PERMITTED = "action_not_permitted"


_HTTP_STATUS: Final = {DenialReason.UNKNOWN_SOURCE: 401, DenialReason.UNKNOWN_OPERATOR: 401}


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to "may this caller do this for this LA?". ``detail`` is safe to log and return to the caller."""

    allowed: bool
    reason: DenialReason | None = None
    detail: str = ""

    @property
    def http_status(self) -> int:
        """200 when allowed; 401 when the caller is unknown; 403 when known but out of scope."""
        if self.allowed:
            return 200
        return _HTTP_STATUS.get(self.reason, 403) if self.reason else 403

    @property
    def deadletter_reason(self) -> DeadLetterReason | None:
        """The dead-letter reason for a refused raw-topic record (source denials only)."""
        if self.reason in (DenialReason.UNKNOWN_SOURCE, DenialReason.SOURCE_NOT_ALLOWED):
            return DeadLetterReason(self.reason.value)
        return None


_ALLOWED: Final = Decision(allowed=True)


# --------------------------------------------------------------------------------------------------------
# The registry (plain data)
# --------------------------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_la_codes(codes: tuple[str, ...]) -> tuple[str, ...]:
    for code in codes:
        if code != _ANY_LA and not is_la_code(code):
            raise ValueError(f"LA code must be 3 digits, got {code!r}")
    if len(set(codes)) != len(codes):
        raise ValueError("LA codes must not repeat")
    return codes


class Tenant(_Frozen):
    """An LA served by this deployment."""

    la_code: str = Field(description="The LA's 3-digit code (the spec's LA Code).")
    name: str = Field(min_length=1, max_length=200, description="The LA's name, as shown in transparency material.")
    hub_id: str | None = Field(default=None, description="The regional hub that runs this deployment for the LA.")

    @field_validator("la_code")
    @classmethod
    def _la(cls, v: str) -> str:
        if not is_la_code(v):
            raise ValueError(f"LA code must be 3 digits, got {v!r}")
        return v


def _check_key_hash(v: str | None) -> str | None:
    if v is not None and not _KEY_HASH.fullmatch(v):
        raise ValueError("key_hash must be 'sha256:' followed by 64 lower-case hex digits")
    return v


LACodes = Annotated[tuple[str, ...], AfterValidator(_check_la_codes)]
KeyHash = Annotated[str | None, AfterValidator(_check_key_hash)]


class Source(_Frozen):
    """A system that sends records: an LA's own system, a contracted provider's, or a hub's."""

    id: str = Field(description="Stable id; the record's Provenance.source.")
    name: str = Field(default="", max_length=200)
    kind: SourceKind
    la_codes: LACodes = Field(description="The LAs this source may submit for.")
    cqc_location_id: str | None = Field(default=None, description="For providers: their CQC location id.")
    hub_id: str | None = Field(default=None, description="For hub sources: the hub they belong to.")
    key_hash: KeyHash = Field(
        default=None, description="'sha256:' + SHA-256 hex of the API key; null when no HTTP key is issued."
    )
    release: Release | None = Field(
        default=None,
        description="The specification release this source's records are checked against (r1/r2); null: the "
        "release in force for each record's reporting period (the spec's cut-over). An upload's cld-release "
        "header overrides it.",
    )

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.fullmatch(v):
            raise ValueError("source id: lower-case letters, digits, '.', '_' or '-', at most 64 characters")
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> Source:
        if self.cqc_location_id is not None and self.kind is not SourceKind.PROVIDER:
            raise ValueError("only a provider source has a CQC location id")
        if self.kind is SourceKind.HUB and not self.hub_id:
            raise ValueError("a hub source names its hub_id")
        return self


class Operator(_Frozen):
    """A person using the submission service, with the LAs they may act for."""

    name: str = Field(min_length=1, max_length=100)
    role: OperatorRole
    la_codes: LACodes = Field(description="Explicit scope: the LAs this operator sees.")
    hub_id: str | None = Field(default=None, description="For hub operators: their hub.")
    key_hash: KeyHash = Field(
        default=None,
        description="'sha256:' + SHA-256 hex of the operator's API key; null when no key is issued (no API access).",
    )

    @model_validator(mode="after")
    def _role_fields(self) -> Operator:
        if self.role is OperatorRole.HUB_OPERATOR and not self.hub_id:
            raise ValueError("a hub operator names its hub_id")
        if self.role is OperatorRole.LA_OPERATOR and self.hub_id is not None:
            raise ValueError("an LA operator belongs to LAs, not to a hub")
        return self


class Registry(_Frozen):
    """Tenants, sources and operators of one deployment. Build with :func:`load_registry` or in tests directly."""

    format: Literal["cld-tenants/1"] = REGISTRY_FORMAT
    tenants: tuple[Tenant, ...] = ()
    sources: tuple[Source, ...] = ()
    operators: tuple[Operator, ...] = ()
    open_mode: bool = Field(
        default=False, exclude=True, description="Set only by open_registry(); a file can never declare it."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        las = [t.la_code for t in self.tenants]
        if len(set(las)) != len(las):
            raise ValueError("a tenant LA code appears twice")
        known = set(las)
        hubs = {t.hub_id for t in self.tenants if t.hub_id}
        ids = [s.id for s in self.sources]
        if len(set(ids)) != len(ids):
            raise ValueError("a source id appears twice")
        hashes = [s.key_hash for s in self.sources if s.key_hash]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two sources share one key")
        names = [o.name for o in self.operators]
        if len(set(names)) != len(names):
            raise ValueError("an operator name appears twice")
        op_hashes = [o.key_hash for o in self.operators if o.key_hash]
        if len(set(op_hashes)) != len(op_hashes):
            raise ValueError("two operators share one key")
        if set(op_hashes) & set(hashes):
            raise ValueError("an operator and a source share one key")
        for s in self.sources:
            if _ANY_LA in s.la_codes and not self.open_mode:
                raise ValueError(f"source {s.id!r}: '*' is not an LA code")
            if unknown := sorted(set(s.la_codes) - known - {_ANY_LA}):
                raise ValueError(f"source {s.id!r} names LAs that are not tenants: {unknown}")
            if s.hub_id and s.hub_id not in hubs:
                raise ValueError(f"source {s.id!r} names an unknown hub {s.hub_id!r}")
        for o in self.operators:
            if _ANY_LA in o.la_codes:
                raise ValueError(f"operator {o.name!r}: '*' is not an LA code")
            if unknown := sorted(set(o.la_codes) - known):
                raise ValueError(f"operator {o.name!r} names LAs that are not tenants: {unknown}")
            if o.role is OperatorRole.HUB_OPERATOR:
                outside = sorted(c for c in o.la_codes if self.tenant(c).hub_id != o.hub_id)
                if outside:
                    raise ValueError(f"hub operator {o.name!r} names LAs outside hub {o.hub_id!r}: {outside}")
        return self

    # ---- look-ups ----
    def tenant(self, la_code: str) -> Tenant:
        for t in self.tenants:
            if t.la_code == la_code:
                return t
        raise KeyError(la_code)

    def find_tenant(self, la_code: str) -> Tenant | None:
        return next((t for t in self.tenants if t.la_code == la_code), None)

    def source(self, source_id: str) -> Source | None:
        """The source with this id (the raw Kafka topic names its source); in open mode any id is an open source."""
        found = next((s for s in self.sources if s.id == source_id), None)
        if found is None and self.open_mode:
            return _open_source()
        return found

    def operator(self, name: str) -> Operator | None:
        return next((o for o in self.operators if o.name == name), None)

    def hub_la_codes(self, hub_id: str) -> tuple[str, ...]:
        return tuple(t.la_code for t in self.tenants if t.hub_id == hub_id)


def _open_source() -> Source:
    return Source(id=OPEN_SOURCE_ID, name="open mode", kind=SourceKind.LA_SYSTEM, la_codes=(_ANY_LA,))


def _open_operator() -> Operator:
    return Operator(name=OPEN_OPERATOR_NAME, role=OperatorRole.LA_OPERATOR, la_codes=(_ANY_LA,))


def open_registry() -> Registry:
    """The registry of an explicitly open deployment: any key is an ``open`` source allowed for every LA."""
    return Registry(open_mode=True)


# --------------------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------------------


def generate_api_key() -> str:
    """A new API key: ``cldk_`` + 32 random bytes, URL-safe base64 (48 characters). Show it once; store its hash."""
    return API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_RANDOM_BYTES)


def hash_api_key(key: str) -> str:
    """``sha256:`` + hex digest. A fast hash suffices for a 256-bit random key (see the module docstring)."""
    return KEY_HASH_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def authenticate_source(registry: Registry, presented_key: str | None) -> Source | None:
    """The source whose key this is, or None. Constant-time: every stored hash is compared, with no early exit."""
    if registry.open_mode:
        return _open_source()
    if not presented_key or len(presented_key) > MAX_PRESENTED_KEY_CHARS:
        return None
    presented = hash_api_key(presented_key).encode("ascii")
    found: Source | None = None
    for source in registry.sources:
        stored = (source.key_hash or "").encode("ascii")
        # compare_digest on equal-length digests; a source without a key compares against itself and fails.
        if hmac.compare_digest(presented, stored or b"-" * len(presented)) and stored:
            found = source
    return found


def authenticate_operator(registry: Registry, presented_key: str | None) -> Operator | None:
    """The operator whose key this is, or None. Constant-time like :func:`authenticate_source`: every operator's
    stored hash is compared, with no early exit. In open mode any caller is the ``open`` operator (every LA)."""
    if registry.open_mode:
        return _open_operator()
    if not presented_key or len(presented_key) > MAX_PRESENTED_KEY_CHARS:
        return None
    presented = hash_api_key(presented_key).encode("ascii")
    found: Operator | None = None
    for operator in registry.operators:
        stored = (operator.key_hash or "").encode("ascii")
        if hmac.compare_digest(presented, stored or b"-" * len(presented)) and stored:
            found = operator
    return found


# --------------------------------------------------------------------------------------------------------
# Authorisation
# --------------------------------------------------------------------------------------------------------


def authorise_source(source: Source | None, la_code: str) -> Decision:
    """May this source submit (or read) records for ``la_code``? ``None`` (not authenticated) is unknown_source."""
    if source is None:
        return Decision(False, DenialReason.UNKNOWN_SOURCE, "the source is not known to this deployment")
    if la_code in source.la_codes or _ANY_LA in source.la_codes:
        return _ALLOWED
    return Decision(
        False,
        DenialReason.SOURCE_NOT_ALLOWED,
        f"source {source.id!r} may not submit for LA {_safe_la(la_code)}",
    )


def authorise_source_id(registry: Registry, source_id: str | None, la_code: str) -> Decision:
    """The raw Kafka topic's check: the record names its source (Provenance.source); is it known and in scope?"""
    return authorise_source(registry.source(source_id) if source_id else None, la_code)


def authorise_operator(operator: Operator | None, la_code: str, action: OperatorAction) -> Decision:
    """May this operator take ``action`` for ``la_code``? Scope first (no hint about other LAs), then role."""
    if operator is None:
        return Decision(False, DenialReason.UNKNOWN_OPERATOR, "the operator is not known to this deployment")
    if la_code not in operator.la_codes and _ANY_LA not in operator.la_codes:
        return Decision(
            False,
            DenialReason.OPERATOR_NOT_IN_SCOPE,
            f"operator {operator.name!r} does not act for LA {_safe_la(la_code)}",
        )
    if action not in ROLE_ACTIONS[operator.role]:
        return Decision(
            False,
            DenialReason.ACTION_NOT_PERMITTED,
            f"a {operator.role.value} may not {action.value.replace('_', ' ')}",
        )
    return _ALLOWED


def visible_la_codes(operator: Operator) -> tuple[str, ...]:
    """The LAs whose submissions and reports this operator may list (filter listings with this).

    The ``open`` operator of open mode holds ``*``: use :func:`sees_la` to test one LA."""
    return operator.la_codes


def sees_la(operator: Operator, la_code: str) -> bool:
    """May this operator see this LA's submissions and reports (a listing filter; open mode sees all)?"""
    return la_code in operator.la_codes or _ANY_LA in operator.la_codes


def _safe_la(la_code: str) -> str:
    """An LA code for a message: it comes from the caller, so only a well-formed one is echoed."""
    return la_code if is_la_code(la_code) else "(malformed LA code)"


# --------------------------------------------------------------------------------------------------------
# Deployment mode and changes to the registry (used by `cld tenants`; reading and writing the file: loaders)
# --------------------------------------------------------------------------------------------------------


class TenancyMode(StrEnum):
    REQUIRED = "required"
    """Default: the deployment needs a registry file and refuses to start without one."""
    OPEN = "open"
    """No registry file: every caller is an ``open`` source for every LA. Local demos only; logged loudly."""


def _revalidate(registry: Registry, **changes: Any) -> Registry:
    data = registry.model_dump(mode="json")
    data.update(changes)
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]) for e in exc.errors())
        raise TenancyError(problems) from exc


def with_tenant(registry: Registry, tenant: Tenant) -> Registry:
    if registry.find_tenant(tenant.la_code):
        raise TenancyError(f"LA {tenant.la_code} is already a tenant")
    return _revalidate(registry, tenants=[*registry.model_dump(mode="json")["tenants"], tenant.model_dump(mode="json")])


def with_new_source(
    registry: Registry,
    *,
    source_id: str,
    kind: SourceKind,
    la_codes: Iterable[str],
    name: str = "",
    cqc_location_id: str | None = None,
    hub_id: str | None = None,
    release: Release | None = None,
) -> tuple[Registry, str]:
    """Add a source with a freshly generated key. Returns the new registry and the key (show it once)."""
    if registry.source(source_id) is not None:
        raise TenancyError(f"source {source_id!r} already exists (use rotate-key for a new key)")
    key = generate_api_key()
    try:
        source = Source(
            id=source_id,
            name=name,
            kind=kind,
            la_codes=tuple(la_codes),
            cqc_location_id=cqc_location_id,
            hub_id=hub_id,
            key_hash=hash_api_key(key),
            release=release,
        )
    except ValidationError as exc:
        raise TenancyError("; ".join(str(e["msg"]) for e in exc.errors())) from exc
    sources = [*registry.model_dump(mode="json")["sources"], source.model_dump(mode="json")]
    return _revalidate(registry, sources=sources), key


def with_rotated_key(registry: Registry, source_id: str) -> tuple[Registry, str]:
    """Replace a source's key (the old key stops working at once). Returns the new registry and the new key."""
    if registry.source(source_id) is None:
        raise TenancyError(f"no source {source_id!r}")
    key = generate_api_key()
    sources = [
        {**s.model_dump(mode="json"), **({"key_hash": hash_api_key(key)} if s.id == source_id else {})}
        for s in registry.sources
    ]
    return _revalidate(registry, sources=sources), key


def with_operator(registry: Registry, operator: Operator) -> Registry:
    if registry.operator(operator.name) is not None:
        raise TenancyError(f"operator {operator.name!r} already exists")
    ops = [*registry.model_dump(mode="json")["operators"], operator.model_dump(mode="json")]
    return _revalidate(registry, operators=ops)


def with_operator_key(registry: Registry, name: str) -> tuple[Registry, str]:
    """Issue (or replace) an operator's API key; the old one stops working at once. Returns the registry and
    the new key (show it once; only its hash is kept)."""
    if registry.operator(name) is None:
        raise TenancyError(f"no operator {name!r}")
    key = generate_api_key()
    ops = [
        {**o.model_dump(mode="json"), **({"key_hash": hash_api_key(key)} if o.name == name else {})}
        for o in registry.operators
    ]
    return _revalidate(registry, operators=ops), key
