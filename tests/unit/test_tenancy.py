"""Tenants, sources and operators: who may act for which LA (issue 6 section 1)."""

from __future__ import annotations

import hmac
import json
import logging
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cld_cli import cmd_tenants
from cld_governance.loaders import load_registry, registry_from_environ, resolve_registry, save_registry
from cld_governance.tenancy import (
    DenialReason,
    Operator,
    OperatorAction,
    OperatorRole,
    Registry,
    Source,
    SourceKind,
    TenancyError,
    TenancyMode,
    Tenant,
    authenticate_operator,
    authenticate_source,
    authorise_operator,
    authorise_source,
    authorise_source_id,
    generate_api_key,
    hash_api_key,
    open_registry,
    sees_la,
    with_new_source,
    with_operator_key,
)
from cld_schemas.events import DeadLetterReason

LA_A, LA_B, LA_C = "318", "319", "320"
EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "config" / "tenants.example.json"


@pytest.fixture
def keys() -> dict[str, str]:
    return {"sys-a": generate_api_key(), "sys-b": generate_api_key(), "provider-ab": generate_api_key()}


@pytest.fixture
def registry(keys: dict[str, str]) -> Registry:
    return Registry(
        tenants=(
            Tenant(la_code=LA_A, name="LA A", hub_id="hub-1"),
            Tenant(la_code=LA_B, name="LA B", hub_id="hub-1"),
            Tenant(la_code=LA_C, name="LA C"),
        ),
        sources=(
            Source(id="sys-a", kind=SourceKind.LA_SYSTEM, la_codes=(LA_A,), key_hash=hash_api_key(keys["sys-a"])),
            Source(id="sys-b", kind=SourceKind.LA_SYSTEM, la_codes=(LA_B,), key_hash=hash_api_key(keys["sys-b"])),
            Source(
                id="provider-ab",
                kind=SourceKind.PROVIDER,
                la_codes=(LA_A, LA_B),
                cqc_location_id="1-000000001",
                key_hash=hash_api_key(keys["provider-ab"]),
            ),
            Source(id="kafka-only", kind=SourceKind.LA_SYSTEM, la_codes=(LA_C,)),
        ),
        operators=(
            Operator(name="officer-a", role=OperatorRole.LA_OPERATOR, la_codes=(LA_A,)),
            Operator(name="hub-ops", role=OperatorRole.HUB_OPERATOR, la_codes=(LA_A, LA_B), hub_id="hub-1"),
        ),
    )


# ---- sources ------------------------------------------------------------------------------------------


def test_a_source_for_la_a_is_refused_for_la_b(registry: Registry, keys: dict[str, str]) -> None:
    source = authenticate_source(registry, keys["sys-a"])
    assert source is not None
    assert source.id == "sys-a"
    assert authorise_source(source, LA_A).allowed

    refused = authorise_source(source, LA_B)
    assert not refused.allowed
    assert refused.reason is DenialReason.SOURCE_NOT_ALLOWED
    assert refused.deadletter_reason is DeadLetterReason.SOURCE_NOT_ALLOWED
    assert refused.http_status == 403
    assert LA_B in refused.detail
    assert keys["sys-a"] not in refused.detail


def test_a_provider_speaks_for_exactly_its_las(registry: Registry, keys: dict[str, str]) -> None:
    provider = authenticate_source(registry, keys["provider-ab"])
    assert provider is not None
    assert provider.kind is SourceKind.PROVIDER
    assert [authorise_source(provider, la).allowed for la in (LA_A, LA_B, LA_C)] == [True, True, False]


@pytest.mark.parametrize("presented", ["", None, "cldk_not-a-real-key", generate_api_key(), "x" * 100_000])
def test_an_unknown_key_is_unknown_source(registry: Registry, presented: str | None) -> None:
    source = authenticate_source(registry, presented)
    assert source is None
    decision = authorise_source(source, LA_A)
    assert decision.reason is DenialReason.UNKNOWN_SOURCE
    assert decision.reason.value == DeadLetterReason.UNKNOWN_SOURCE.value
    assert decision.http_status == 401


def test_a_source_without_a_key_never_authenticates_over_http(registry: Registry) -> None:
    # "kafka-only" has key_hash None: no presented value (not even one hashing to nothing) matches it.
    assert authenticate_source(registry, "") is None
    assert authorise_source_id(registry, "kafka-only", LA_C).allowed


def test_raw_topic_check_by_source_id(registry: Registry) -> None:
    assert authorise_source_id(registry, "sys-b", LA_B).allowed
    assert authorise_source_id(registry, "sys-b", LA_A).reason is DenialReason.SOURCE_NOT_ALLOWED
    assert authorise_source_id(registry, "nobody", LA_A).reason is DenialReason.UNKNOWN_SOURCE
    assert authorise_source_id(registry, None, LA_A).reason is DenialReason.UNKNOWN_SOURCE


def test_a_malformed_la_code_is_not_echoed(registry: Registry, keys: dict[str, str]) -> None:
    source = authenticate_source(registry, keys["sys-a"])
    decision = authorise_source(source, "<script>")
    assert not decision.allowed
    assert "<script>" not in decision.detail


def test_authentication_compares_in_constant_time_against_every_source(
    registry: Registry, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("cld_governance.tenancy.hmac.compare_digest", spy)
    # The first source matches; every source is still compared (no early exit), on equal-length digests.
    assert authenticate_source(registry, keys["sys-a"]) is not None
    assert len(calls) == len(registry.sources)
    assert all(len(a) == len(b) for a, b in calls)
    calls.clear()
    assert authenticate_source(registry, generate_api_key()) is None
    assert len(calls) == len(registry.sources)


def test_keys_are_long_random_and_stored_only_as_a_hash(tmp_path: Path, registry: Registry) -> None:
    new, key = with_new_source(registry, source_id="new-provider", kind=SourceKind.PROVIDER, la_codes=[LA_C])
    assert key.startswith("cldk_")
    assert len(key) >= 40
    assert key != generate_api_key()
    path = tmp_path / "tenants.json"
    save_registry(new, path)
    text = path.read_text()
    assert key not in text
    assert hash_api_key(key) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reloaded = load_registry(path)
    assert (found := authenticate_source(reloaded, key)) is not None
    assert found.id == "new-provider"


# ---- operators ----------------------------------------------------------------------------------------


def test_an_la_operator_sees_and_approves_only_their_la(registry: Registry) -> None:
    officer = registry.operator("officer-a")
    for action in OperatorAction:
        assert authorise_operator(officer, LA_A, action).allowed, action
    for action in (OperatorAction.VIEW, OperatorAction.APPROVE_SUBMISSION):
        refused = authorise_operator(officer, LA_B, action)
        assert not refused.allowed
        assert refused.reason is DenialReason.OPERATOR_NOT_IN_SCOPE
        assert refused.http_status == 403


def test_a_hub_operator_sees_the_hubs_las_but_does_not_approve_or_export(registry: Registry) -> None:
    hub_ops = registry.operator("hub-ops")
    assert authorise_operator(hub_ops, LA_A, OperatorAction.VIEW).allowed
    assert authorise_operator(hub_ops, LA_B, OperatorAction.SEND_SUBMISSION).allowed
    assert authorise_operator(hub_ops, LA_C, OperatorAction.VIEW).reason is DenialReason.OPERATOR_NOT_IN_SCOPE
    for action in (OperatorAction.APPROVE_SUBMISSION, OperatorAction.EXPORT):
        assert authorise_operator(hub_ops, LA_A, action).reason is DenialReason.ACTION_NOT_PERMITTED


def test_an_unknown_operator_is_refused(registry: Registry) -> None:
    decision = authorise_operator(registry.operator("mallory"), LA_A, OperatorAction.VIEW)
    assert decision.reason is DenialReason.UNKNOWN_OPERATOR
    assert decision.http_status == 401


def test_a_hub_operator_cannot_be_given_an_la_outside_their_hub(registry: Registry) -> None:
    data = registry.model_dump(mode="json")
    data["operators"].append({"name": "sneaky", "role": "hub_operator", "la_codes": [LA_C], "hub_id": "hub-1"})
    with pytest.raises(ValueError, match="outside hub"):
        Registry.model_validate(data)


# ---- the registry file --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["sources"][0].update(la_codes=["999"]), "not tenants"),
        (lambda d: d["sources"][0].update(la_codes=["*"]), "not an LA code"),
        (lambda d: d["sources"][1].update(key_hash=d["sources"][0]["key_hash"]), "share one key"),
        (lambda d: d["sources"][0].update(key_hash="plaintext-key"), "key_hash"),
        (lambda d: d.update(open_mode=True), "deployment setting"),
        (lambda d: d["tenants"].append(d["tenants"][0]), "appears twice"),
    ],
)
def test_an_invalid_registry_file_is_refused(tmp_path: Path, registry: Registry, change, message: str) -> None:  # type: ignore[no-untyped-def]
    data = registry.model_dump(mode="json")
    change(data)
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps(data))
    with pytest.raises(TenancyError, match=message):
        load_registry(path)


def test_no_registry_is_an_error_unless_open_mode_is_asked_for(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(TenancyError, match="CLD_TENANTS_FILE"):
        resolve_registry(None)
    with caplog.at_level(logging.WARNING, logger="cld.tenancy"):
        open_reg = resolve_registry(None, TenancyMode.OPEN)
    assert any("OPEN MODE" in r.getMessage() for r in caplog.records)
    source = authenticate_source(open_reg, "anything")
    assert source is not None
    assert source.id == "open"
    assert authorise_source(source, LA_B).allowed
    with pytest.raises(TenancyError):
        save_registry(open_reg, Path("never-written.json"))


def test_the_registry_comes_from_the_environment(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "tenants.json"
    save_registry(registry, path)
    assert registry_from_environ({"CLD_TENANTS_FILE": str(path)}) == registry
    assert registry_from_environ({"CLD_TENANCY_MODE": "open"}).open_mode
    with pytest.raises(TenancyError, match="CLD_TENANTS_FILE"):
        registry_from_environ({})
    with pytest.raises(TenancyError, match="CLD_TENANCY_MODE"):
        registry_from_environ({"CLD_TENANCY_MODE": "yes-please"})


def test_the_example_registry_loads_and_holds_no_credentials() -> None:
    example = load_registry(EXAMPLE)
    assert example.sources
    assert example.operators
    assert all(s.key_hash is None for s in example.sources)
    assert {s.kind for s in example.sources} == set(SourceKind)


# ---- the CLI ------------------------------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    cmd_tenants.register(app)
    return app


def test_cli_add_source_prints_the_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    runner, app, reg = CliRunner(), _app(), tmp_path / "tenants.json"
    assert (
        runner.invoke(app, ["tenants", "add-tenant", "--registry", str(reg), "--la", LA_A, "--name", "A"]).exit_code
        == 0
    )
    assert (
        runner.invoke(app, ["tenants", "add-tenant", "--registry", str(reg), "--la", LA_B, "--name", "B"]).exit_code
        == 0
    )
    added = runner.invoke(
        app,
        [
            "tenants",
            "add-source",
            "--registry",
            str(reg),
            "--id",
            "care-co",
            "--kind",
            "provider",
            "--la",
            LA_A,
            "--la",
            LA_B,
            "--cqc-location-id",
            "1-000000002",
        ],
    )
    assert added.exit_code == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("cldk_")
    assert "\n" not in key
    assert key not in reg.read_text()
    assert hash_api_key(key) in reg.read_text()

    listed = runner.invoke(app, ["tenants", "list", "--registry", str(reg)])
    assert listed.exit_code == 0
    assert "care-co" in listed.stdout
    assert key not in listed.stdout
    assert hash_api_key(key)[7:20] not in listed.stdout

    ok = runner.invoke(app, ["tenants", "check-key", "--registry", str(reg), "--la", LA_B], input=key + "\n")
    assert ok.exit_code == 0
    assert "care-co" in ok.stdout
    unknown = runner.invoke(app, ["tenants", "check-key", "--registry", str(reg)], input=generate_api_key() + "\n")
    assert unknown.exit_code == 1


def test_cli_check_key_takes_no_key_on_the_command_line() -> None:
    command = typer.main.get_command(_app())
    check = command.commands["tenants"].commands["check-key"]  # type: ignore[attr-defined]
    assert {p.name for p in check.params} == {"registry", "la"}


def test_cli_add_source_refuses_an_la_that_is_not_a_tenant(tmp_path: Path) -> None:
    runner, app, reg = CliRunner(), _app(), tmp_path / "tenants.json"
    runner.invoke(app, ["tenants", "add-tenant", "--registry", str(reg), "--la", LA_A, "--name", "A"])
    before = reg.read_text()
    refused = runner.invoke(
        app, ["tenants", "add-source", "--registry", str(reg), "--id", "x", "--kind", "la_system", "--la", LA_B]
    )
    assert refused.exit_code == 2
    assert "not tenants" in refused.stderr
    assert refused.stdout == ""
    assert reg.read_text() == before


def test_cli_init_issues_a_key_per_source_into_a_private_file(tmp_path: Path) -> None:
    reg, keys_file = tmp_path / "run" / "tenants.json", tmp_path / "run" / "keys.json"
    args = ["tenants", "init", "--registry", str(reg), "--from", str(EXAMPLE), "--keys-out", str(keys_file)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.stderr
    issued = json.loads(keys_file.read_text())
    loaded = load_registry(reg)
    assert set(issued) == {s.id for s in loaded.sources}
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    for source_id, key in issued.items():
        assert key not in reg.read_text()
        assert (found := authenticate_source(loaded, key)) is not None
        assert found.id == source_id
    assert CliRunner().invoke(_app(), args).exit_code == 2  # never overwrites without --force


# ---- operator keys --------------------------------------------------------------------------------------


def test_an_operator_key_authenticates_that_operator_only(registry: Registry) -> None:
    reg, key = with_operator_key(registry, "officer-a")
    found = authenticate_operator(reg, key)
    assert found is not None
    assert found.name == "officer-a"
    assert authenticate_operator(reg, generate_api_key()) is None
    assert authenticate_operator(reg, None) is None
    assert authenticate_operator(reg, "") is None
    assert authenticate_operator(reg, key + "x" * 300) is None  # oversize: refused before hashing
    assert authenticate_source(reg, key) is None  # an operator key is not a source key
    # A rotated key replaces the old one at once.
    reg2, key2 = with_operator_key(reg, "officer-a")
    assert authenticate_operator(reg2, key) is None
    assert (again := authenticate_operator(reg2, key2)) is not None
    assert again.name == "officer-a"
    assert key2 not in reg2.model_dump_json()


def test_operator_authentication_compares_against_every_operator(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg, key = with_operator_key(registry, "officer-a")  # the first operator: no early exit after it
    reg, _ = with_operator_key(reg, "hub-ops")
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("cld_governance.tenancy.hmac.compare_digest", spy)
    assert authenticate_operator(reg, key) is not None
    assert len(calls) == len(reg.operators)
    assert all(len(a) == len(b) for a, b in calls)


def test_an_operator_without_a_key_never_authenticates(registry: Registry) -> None:
    assert all(o.key_hash is None for o in registry.operators)
    assert authenticate_operator(registry, generate_api_key()) is None


def test_one_key_identifies_one_principal(registry: Registry, keys: dict[str, str]) -> None:
    data = registry.model_dump(mode="json")
    data["operators"][0]["key_hash"] = hash_api_key(keys["sys-a"])
    with pytest.raises(ValueError, match="an operator and a source share one key"):
        Registry.model_validate(data)
    shared = hash_api_key(generate_api_key())
    data["operators"][0]["key_hash"] = shared
    data["operators"][1]["key_hash"] = shared
    with pytest.raises(ValueError, match="two operators share one key"):
        Registry.model_validate(data)


def test_operator_keys_survive_a_save_and_load_as_hashes_only(tmp_path: Path, registry: Registry) -> None:
    reg, key = with_operator_key(registry, "hub-ops")
    path = tmp_path / "tenants.json"
    save_registry(reg, path)
    assert key not in path.read_text()
    found = authenticate_operator(load_registry(path), key)
    assert found is not None
    assert found.name == "hub-ops"


def test_open_mode_has_an_open_operator_for_every_la() -> None:
    op = authenticate_operator(open_registry(), None)
    assert op is not None
    assert authorise_operator(op, LA_A, OperatorAction.APPROVE_SUBMISSION).allowed
    assert sees_la(op, LA_B)


def test_sees_la_filters_listings_to_the_operators_las(registry: Registry) -> None:
    officer = registry.operator("officer-a")
    assert officer is not None
    assert sees_la(officer, LA_A)
    assert not sees_la(officer, LA_B)


def test_cli_add_operator_prints_a_key_once_and_rotate_replaces_it(tmp_path: Path) -> None:
    runner, app, reg = CliRunner(), _app(), tmp_path / "tenants.json"
    assert (
        runner.invoke(app, ["tenants", "add-tenant", "--registry", str(reg), "--la", LA_A, "--name", "A"]).exit_code
        == 0
    )
    added = runner.invoke(
        app,
        ["tenants", "add-operator", "--registry", str(reg), "--name", "alice", "--role", "la_operator", "--la", LA_A],
    )
    assert added.exit_code == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("cldk_")
    assert key not in reg.read_text()
    assert (op := authenticate_operator(load_registry(reg), key)) is not None
    assert op.name == "alice"

    rotated = runner.invoke(app, ["tenants", "rotate-operator-key", "--registry", str(reg), "--name", "alice"])
    assert rotated.exit_code == 0, rotated.stderr
    new_key = rotated.stdout.strip()
    assert new_key != key
    assert authenticate_operator(load_registry(reg), key) is None
    assert authenticate_operator(load_registry(reg), new_key) is not None

    nokey = runner.invoke(
        app,
        [
            "tenants",
            "add-operator",
            "--registry",
            str(reg),
            "--name",
            "bob",
            "--role",
            "la_operator",
            "--la",
            LA_A,
            "--no-key",
        ],
    )
    assert nokey.exit_code == 0, nokey.stderr
    assert nokey.stdout.strip() == ""
    bob = load_registry(reg).operator("bob")
    assert bob is not None
    assert bob.key_hash is None


def test_cli_init_can_issue_operator_keys_into_a_private_file(tmp_path: Path) -> None:
    runner, app = CliRunner(), _app()
    reg, keys_out, op_keys = tmp_path / "t.json", tmp_path / "keys.json", tmp_path / "operator-keys.json"
    result = runner.invoke(
        app,
        [
            "tenants",
            "init",
            "--registry",
            str(reg),
            "--from",
            str(EXAMPLE),
            "--keys-out",
            str(keys_out),
            "--operator-keys-out",
            str(op_keys),
        ],
    )
    assert result.exit_code == 0, result.stderr
    issued = json.loads(op_keys.read_text())
    loaded = load_registry(reg)
    assert set(issued) == {o.name for o in loaded.operators}
    assert stat.S_IMODE(op_keys.stat().st_mode) == 0o600
    for name, key in issued.items():
        assert key not in reg.read_text()
        assert (op := authenticate_operator(loaded, key)) is not None
        assert op.name == name
