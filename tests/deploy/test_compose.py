"""Docker Compose: compose.yaml against the Compose Specification JSON schema (offline), and its wiring.

Also home of :func:`settings_env_names` (used by test_k8s_manifests.py too): the environment variable names a
pydantic-settings class reads, derived from the classes themselves, so that a deployment file setting a name
no service reads fails a test.
"""

from __future__ import annotations

import copy
import importlib
import ipaddress
import json
import os
import re
import subprocess
import typing
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import AliasChoices, BaseModel
from pydantic_settings import BaseSettings

from cld_cli.cmd_serve import composition_root
from cld_runtime.settings import Settings
from cld_runtime.topics import TOPIC_CONFIGS
from cld_submission.adapters.transport.mesh import MeshSettings
from tests.deploy.tools import DEPLOY, REPO, SERVICES, TOPICS, in_ci

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
FETCH = COMPOSE_DIR / "fetch-compose-schema.sh"


def settings_env_names(cls: type[BaseSettings]) -> frozenset[str]:
    """Environment variable names ``cls`` reads: its validation aliases, else ``env_prefix`` + field name (also
    when ``populate_by_name`` is on), upper-cased; nested models also as ``NAME<delimiter>SUBFIELD``."""
    config = cls.model_config
    prefix = str(config.get("env_prefix") or "")
    delimiter = config.get("env_nested_delimiter")
    populate_by_name = bool(config.get("populate_by_name"))
    names: set[str] = set()
    for field_name, info in cls.model_fields.items():
        alias = info.validation_alias if info.validation_alias is not None else info.alias
        if isinstance(alias, str):
            aliases = [alias]
        elif isinstance(alias, AliasChoices):
            aliases = [choice for choice in alias.choices if isinstance(choice, str)]
        else:
            aliases = []
        bases = [*aliases, *([f"{prefix}{field_name}"] if populate_by_name or not aliases else [])]
        nested = (
            info.annotation if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel) else None
        )
        for base in bases:
            names.add(base.upper())
            if delimiter and nested is not None:
                names.update(f"{base}{delimiter}{sub}".upper() for sub in nested.model_fields)
    return frozenset(names)


def service_settings(name: str) -> type[Settings]:
    """The settings class ``cld serve <name>`` builds (the ``settings`` annotation of ``create_app``)."""
    create_app = importlib.import_module(composition_root(name)).create_app
    cls = typing.get_type_hints(create_app)["settings"]
    assert isinstance(cls, type), name
    assert issubclass(cls, Settings), name
    return cls


def service_env_names(name: str) -> frozenset[str]:
    """Every variable service ``name`` reads (submission also reads MeshSettings, CLD_MESH_*)."""
    names = settings_env_names(service_settings(name))
    return names | settings_env_names(MeshSettings) if name == "submission" else names


def deadletter_writers() -> frozenset[str]:
    """The services whose composition root builds a ``DeadLetterPublisher`` (derived from the code): each must
    be deployed with the dead-letter fingerprint key (CLD_DEADLETTER_KEY_FILE), or its dead letters carry no
    ``payload_hmac`` (issue 10)."""
    from cld_runtime.deadletter import DeadLetterPublisher

    return frozenset(
        name
        for name in SERVICES
        if getattr(importlib.import_module(composition_root(name)), "DeadLetterPublisher", None) is DeadLetterPublisher
    )


def test_the_dead_letter_writers_are_found_in_the_code() -> None:
    assert deadletter_writers() == {"validation", "pseudonymisation", "submission"}


def environment_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the test process's CLD settings with ``env`` (for building settings classes from it)."""
    for key in list(os.environ):
        if key.upper().startswith("CLD_") or key.upper() == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_env_names_follow_pydantic_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    ingest = settings_env_names(service_settings("ingest"))
    assert {"CLD_INGEST_PORT", "KAFKA_BOOTSTRAP_SERVERS", "CLD_KAFKA_BOOTSTRAP_SERVERS", "CLD_TENANTS_FILE"} <= ingest
    assert "INGEST_PORT" not in ingest
    assert "CLD_LOG_FORMAT" not in ingest
    assert "CLD_VALIDATION_PORT" not in ingest
    assert {"CLD_PSEUDO_KEY", "CLD_PSEUDO_KEY_FILE"} <= settings_env_names(service_settings("pseudonymisation"))
    mesh = settings_env_names(MeshSettings)
    assert {"CLD_MESH_URL", "CLD_MESH_PASSWORD_FILE", "CLD_MESH_RETRY__MAX_ATTEMPTS"} <= mesh
    # populate_by_name: the field name is read too, which is why CLD_HTTP_PORT must stay out of shared envs.
    assert "CLD_HTTP_PORT" in ingest
    environment_from({"CLD_HTTP_PORT": "9101"}, monkeypatch)
    assert service_settings("ingest")().http_port == 9101
    environment_from({"CLD_INGEST_PORT": "9102", "INGEST_PORT": "9103"}, monkeypatch)
    assert service_settings("ingest")().http_port == 9102


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The compose-spec schema from a registry package (cached in .cache/compose-spec/)."""
    result = subprocess.run(["bash", str(FETCH)], capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        message = f"could not fetch the compose-spec schema:\n{result.stderr}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    path = Path(result.stdout.strip().splitlines()[-1])
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def _errors(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_spec(schema: dict[str, Any], compose: dict[str, Any]) -> None:
    assert "services" in schema["properties"]
    assert _errors(schema, compose) == []


def test_schema_rejects_a_broken_compose_file(schema: dict[str, Any], compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["ingest"]["restart_policy"] = "always"  # not a service key
    broken["services"]["kafka"]["ports"] = {"29092": 29092}  # must be a list
    errors = _errors(schema, broken)
    assert any("restart_policy" in e for e in errors), errors
    assert any("ports" in e for e in errors), errors


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "kafka-init", *SERVICES, "prometheus", "grafana", "mesh-sandbox", "cld-setup"}
    assert services["kafka"]["image"] == "apache/kafka:3.9.2"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["mesh-sandbox"]["profiles"] == ["trial"]
    assert services["cld-setup"]["profiles"] == ["setup"]
    for name, service in services.items():
        if name not in ("mesh-sandbox", "cld-setup"):
            assert "profiles" not in service, name


def test_cld_services_share_one_image_and_their_settings(compose: dict[str, Any]) -> None:
    for name, port in SERVICES.items():
        service = compose["services"][name]
        assert service["command"] == ["serve", name]
        assert service["build"] == {"context": "../..", "dockerfile": "deploy/compose/Dockerfile"}
        env = service["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env[f"CLD_{name.upper()}_PORT"] == str(port)
        assert "CLD_HTTP_PORT" not in env, "every service honours CLD_HTTP_PORT: they would share one port"
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
        assert f"{port}/health/ready'" in " ".join(service["healthcheck"]["test"])  # healthy = ready (issue 10)
        assert service["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"


def _cld_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: compose["services"][name] for name in SERVICES}


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Mount target -> (source, read-only)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        mounts[target] = (source, "ro" in mode)
    return mounts


def _mounted(path: str, mounts: dict[str, tuple[str, bool]]) -> tuple[str, bool] | None:
    for target, mount in mounts.items():
        if PurePosixPath(path).is_relative_to(target):
            return mount
    return None


def test_every_variable_is_a_setting_the_service_reads(compose: dict[str, Any]) -> None:
    """Shared variables (the x-cld-service anchor) must be read by some service; a service's own, by it."""
    shared = set(compose["x-cld-service"]["environment"])
    read_by_any = frozenset().union(*(service_env_names(name) for name in SERVICES))
    assert not shared - read_by_any, f"no service reads {sorted(shared - read_by_any)}"
    assert "CLD_HTTP_PORT" not in shared
    for name, service in _cld_services(compose).items():
        unknown = set(service["environment"]) - shared - service_env_names(name)
        assert not unknown, f"{name}: {sorted(unknown)} are not settings of {name} (cld_*/service.py, settings.py)"
    # cld-setup runs the `cld` CLI, which reads the runtime's settings (CLD_TENANTS_FILE).
    setup_env = set(compose["services"]["cld-setup"]["environment"])
    assert setup_env <= settings_env_names(Settings), setup_env


def test_services_start_from_the_compose_environment(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Build each service's settings from its compose environment: ports, tenancy, key, state, transport."""
    for name, service in _cld_services(compose).items():
        environment_from({k: str(v) for k, v in service["environment"].items()}, monkeypatch)
        settings: Any = service_settings(name)()
        mounts = _mounts(service)
        assert settings.http_port == SERVICES[name], name
        assert ipaddress.ip_address(settings.http_host).is_unspecified, name
        assert settings.kafka_bootstrap_servers == "kafka:9092"
        assert settings.log_level == "INFO"
        # every service enforces the tenants registry (pseudonymisation: operator keys for GET /v1/risk)
        assert settings.tenants_file is not None, f"{name}: CLD_TENANTS_FILE (or a loud CLD_TENANCY_MODE=open)"
        assert _mounted(str(settings.tenants_file), mounts) == ("cld-tenants", True), name
        # every service that writes dead letters reads the fingerprint key from a read-only secret volume
        if name in deadletter_writers():
            assert settings.deadletter_key is None, f"{name}: the dead-letter key comes from a file"
            assert settings.deadletter_key_file is not None, f"{name}: CLD_DEADLETTER_KEY_FILE"
            assert _mounted(str(settings.deadletter_key_file), mounts) == ("cld-deadletter-key", True), name
        else:
            assert settings.deadletter_key_file is None, f"{name} writes no dead letters: do not mount the key"
    pseudo: Any = service_settings("pseudonymisation")
    environment_from(
        {k: str(v) for k, v in compose["services"]["pseudonymisation"]["environment"].items()}, monkeypatch
    )
    key_file = pseudo().pseudo_key_file
    assert key_file is not None
    assert _mounted(str(key_file), _mounts(compose["services"]["pseudonymisation"])) == ("cld-pseudo-key", True)

    submission = compose["services"]["submission"]
    environment_from({k: str(v) for k, v in submission["environment"].items()}, monkeypatch)
    settings = service_settings("submission")()
    assert settings.transport == "mesh"  # CLD_MESH_* is set, so the files go over MESH
    assert MeshSettings().url == "http://mesh-sandbox:8700"
    assert _mounted(str(settings.state_dir), _mounts(submission)) == ("submission-state", False)


def test_setup_creates_what_the_services_mount(compose: dict[str, Any]) -> None:
    setup = compose["services"]["cld-setup"]
    script = setup["entrypoint"][2]
    mounts = _mounts(setup)
    tenants_file = setup["environment"]["CLD_TENANTS_FILE"]
    assert tenants_file == compose["services"]["ingest"]["environment"]["CLD_TENANTS_FILE"]
    assert _mounted(tenants_file, mounts) == ("cld-tenants", False)
    assert "cld tenants init" in script
    key_file = compose["services"]["pseudonymisation"]["environment"]["CLD_PSEUDO_KEY_FILE"]
    assert key_file in script
    assert _mounted(key_file, mounts) == ("cld-pseudo-key", False)
    for name in deadletter_writers():
        deadletter_key = compose["services"][name]["environment"]["CLD_DEADLETTER_KEY_FILE"]
        assert deadletter_key in script, f"cld-setup does not create {deadletter_key}"
        assert _mounted(deadletter_key, mounts) == ("cld-deadletter-key", False)
    from_file = re.search(r"--from (\S+)", script)
    assert from_file is not None
    source = _mounted(from_file.group(1), mounts)
    assert source is not None
    assert (COMPOSE_DIR / source[0] / PurePosixPath(from_file.group(1)).name).is_file()
    # The Dockerfile prepares every named-volume mount point of the CLD image for uid 10001.
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8")
    for service in (*_cld_services(compose).values(), setup):
        for target, (source_name, _) in _mounts(service).items():
            if not source_name.startswith("."):
                assert target in dockerfile, f"{target}: create it in the Dockerfile, owned by 10001"


def test_bind_mounts_and_build_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).resolve().exists(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: named volume {source} is not declared"
        build = service.get("build")
        if build:
            context = (COMPOSE_DIR / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name


def test_kafka_init_creates_every_topic_like_the_k8s_manifests(compose: dict[str, Any]) -> None:
    script = "\n".join(compose["services"]["kafka-init"]["command"])
    created = dict(re.findall(r"^create (\S+) retention\.ms=(-?\d+)$", script, flags=re.MULTILINE))
    assert set(created) == set(TOPICS)
    topics = [
        doc for doc in yaml.safe_load_all((DEPLOY / "k8s" / "kafka-topics.yaml").read_text(encoding="utf-8")) if doc
    ]
    k8s = {doc["spec"]["topicName"]: str(doc["spec"]["config"]["retention.ms"]) for doc in topics}
    assert created == k8s
    assert created == {name: config["retention.ms"] for name, config in TOPIC_CONFIGS.items()}
    assert "--partitions 6" in script


def test_dockerfile_installs_from_the_lock_and_runs_cld() -> None:
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8")
    assert "uv sync --frozen --no-dev" in dockerfile
    assert 'ENTRYPOINT ["cld"]' in dockerfile
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, flags=re.MULTILINE):
        for item in source.split():
            assert (REPO / item).exists(), f"Dockerfile copies {item}, which is not in the repository"
    ignore = (COMPOSE_DIR / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    assert "!uv.lock" in ignore
