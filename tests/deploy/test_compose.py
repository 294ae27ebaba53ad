"""Docker Compose: compose.yaml against the Compose Specification JSON schema (offline), and its wiring."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.tools import DEPLOY, REPO, SERVICES, TOPICS, in_ci

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
FETCH = COMPOSE_DIR / "fetch-compose-schema.sh"


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
    assert set(services) == {"kafka", "kafka-init", *SERVICES, "prometheus", "grafana", "mesh-sandbox"}
    assert services["kafka"]["image"] == "apache/kafka:3.9.2"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["mesh-sandbox"]["profiles"] == ["trial"]
    for name, service in services.items():
        if name != "mesh-sandbox":
            assert "profiles" not in service, name


def test_cld_services_share_one_image_and_their_settings(compose: dict[str, Any]) -> None:
    for name, port in SERVICES.items():
        service = compose["services"][name]
        assert service["command"] == ["serve", name]
        assert service["build"] == {"context": "../..", "dockerfile": "deploy/compose/Dockerfile"}
        env = service["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env[f"{name.upper()}_PORT"] == str(port)
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
        assert f"{port}/health" in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"


def test_bind_mounts_and_build_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).resolve().exists(), f"{name}: {source}"
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
