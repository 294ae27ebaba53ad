"""Kubernetes: core objects against the bundled OpenAPI schemas (kubernetes-validate, offline); CRDs structurally."""

from __future__ import annotations

import copy
import ipaddress
import shutil
import subprocess
from collections import Counter
from pathlib import PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cld_runtime.topics import TOPIC_CONFIGS
from cld_submission.adapters.transport.mesh import MeshSettings
from tests.deploy.test_compose import deadletter_writers, environment_from, service_env_names, service_settings
from tests.deploy.tools import CONSUMER_GROUPS, DEPLOY, SERVICES, TOPICS

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.31"
CORE_KINDS = {"Namespace", "ServiceAccount", "ConfigMap", "Secret", "Deployment", "Service", "PersistentVolumeClaim"}
# Submission keeps single-writer state on a volume: one replica, never scaled (deploy/k8s/README.md).
SCALED = {name: group for name, group in CONSUMER_GROUPS.items() if name != "submission"}
TENANCY_ENFORCED = ("ingest", "validation", "pseudonymisation", "submission")
RETENTION_MS = {
    "cld.events.raw.v1": 14 * 86_400_000,
    # what `rebuild-state` needs: a rolling 12 months + the submission window (issue 10, finding 12)
    "cld.records.validated.v1": 400 * 86_400_000,
    "cld.records.pseudonymised.v1": 14 * 86_400_000,
    "cld.deadletter.v1": 30 * 86_400_000,
}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return docs


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in _documents() if doc["kind"] == kind}


def test_core_objects_validate_against_the_kubernetes_schema() -> None:
    validated: Counter[str] = Counter()
    for filename, doc in _documents():
        if doc["kind"] not in CORE_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{filename} {doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc}")
        validated[doc["kind"]] += 1
    assert validated == Counter(
        {
            "Namespace": 1,
            "ServiceAccount": 1,
            "ConfigMap": 2,
            "Secret": 6,
            "Deployment": 4,
            "Service": 4,
            "PersistentVolumeClaim": 1,
        }
    )


def test_the_validator_rejects_a_broken_deployment() -> None:
    deployment = copy.deepcopy(_of_kind("Deployment")["cld-ingest"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}  # typo: unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = copy.deepcopy(_of_kind("Deployment")["cld-ingest"])
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8001"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_object_has_a_namespace_and_the_namespace_exists() -> None:
    namespaces = set(_of_kind("Namespace"))
    assert namespaces == {"cld-mesh"}
    for filename, doc in _documents():
        if doc["kind"] == "Namespace":
            continue
        namespace = doc["metadata"].get("namespace")
        # KafkaTopics live with the Strimzi cluster (namespace kafka), everything else in cld-mesh.
        expected = "kafka" if doc["kind"] == "KafkaTopic" else "cld-mesh"
        assert namespace == expected, f"{filename} {doc['kind']}/{doc['metadata']['name']}"


def test_deployments_probes_resources_and_metrics_annotations() -> None:
    deployments = _of_kind("Deployment")
    services = _of_kind("Service")
    assert set(deployments) == {f"cld-{name}" for name in SERVICES}
    for name, port in SERVICES.items():
        deployment = deployments[f"cld-{name}"]
        pod = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        annotations = pod["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }
        (container,) = pod["spec"]["containers"]
        assert container["args"] == ["serve", name]
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        # Liveness (and start-up) ask "does the process answer?" (a restart helps); readiness asks "can it work
        # now?" (broker, state store, registry, consumers: no traffic, no restart) (issue 10).
        for probe, path in (
            ("startupProbe", "/health/live"),
            ("livenessProbe", "/health/live"),
            ("readinessProbe", "/health/ready"),
        ):
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}, (name, probe)
        for section in ("requests", "limits"):
            assert set(container["resources"][section]) == {"cpu", "memory"}, name
        assert {"configMapRef": {"name": "cld-settings"}} in container["envFrom"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True

        service = services[f"cld-{name}"]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        assert service["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]


def test_configmap_carries_the_settings_the_services_read() -> None:
    data = _of_kind("ConfigMap")["cld-settings"]["data"]
    assert data["KAFKA_BOOTSTRAP_SERVERS"]
    for name, port in SERVICES.items():
        assert data[f"CLD_{name.upper()}_PORT"] == str(port)
    for configmap in _of_kind("ConfigMap").values():
        assert "CLD_HTTP_PORT" not in configmap["data"], "every service honours CLD_HTTP_PORT: one port for all"


def _container(name: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = _of_kind("Deployment")[f"cld-{name}"]["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def _container_env(name: str) -> dict[str, str]:
    """The environment of a service's container: envFrom ConfigMaps and (template) Secrets, then env;
    secretKeyRef values resolved from secret.template.yaml."""
    configmaps, secrets = _of_kind("ConfigMap"), _of_kind("Secret")
    container = _container(name)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]]["data"])
        else:
            env.update(secrets[source["secretRef"]["name"]]["stringData"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
    return env


def _file_in_volume(name: str, path: str) -> dict[str, Any]:
    """The volume of service ``name`` that holds ``path``; for Secret volumes the key must be projected."""
    deployment = _of_kind("Deployment")[f"cld-{name}"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    for mount in _container(name)["volumeMounts"]:
        if PurePosixPath(path).is_relative_to(mount["mountPath"]):
            volume = volumes[mount["name"]]
            if "secret" in volume:
                relative = str(PurePosixPath(path).relative_to(mount["mountPath"]))
                secret = _of_kind("Secret")[volume["secret"]["secretName"]]
                items = volume["secret"].get("items") or [{"key": k, "path": k} for k in secret["stringData"]]
                assert relative in {item["path"] for item in items}, f"{name}: {path} is not projected"
                assert {item["key"] for item in items} <= set(secret["stringData"]), f"{name}: {volume}"
            return {**volume, "readOnly": mount.get("readOnly", False)}
    raise AssertionError(f"cld-{name}: {path} is on no mounted volume (the root filesystem is read-only)")


def test_every_variable_is_a_setting_the_service_reads() -> None:
    """Names derived from the settings classes: a name no service reads (INGEST_PORT, CLD_LOG_FORMAT) fails."""
    users: Counter[str] = Counter(
        source["configMapRef"]["name"]
        for name in SERVICES
        for source in _container(name).get("envFrom", [])
        if "configMapRef" in source
    )
    shared = {key for cm, n in users.items() if n > 1 for key in _of_kind("ConfigMap")[cm]["data"]}
    read_by_any = frozenset().union(*(service_env_names(name) for name in SERVICES))
    assert shared
    assert not shared - read_by_any, f"no service reads {sorted(shared - read_by_any)}"
    for name in SERVICES:
        unknown = set(_container_env(name)) - shared - service_env_names(name)
        assert not unknown, f"cld-{name}: {sorted(unknown)} are not settings of {name} (cld_*/service.py)"


def test_services_start_from_the_manifest_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build each service's settings from its pod environment; every file they name is on a mounted volume."""
    kafka_client = _of_kind("Secret")["cld-kafka-client"]["stringData"]
    for name, port in SERVICES.items():
        env = _container_env(name)
        environment_from(env, monkeypatch)
        settings: Any = service_settings(name)()
        assert settings.http_port == port, name
        assert ipaddress.ip_address(settings.http_host).is_unspecified, name
        # TLS listener (9093): SASL_SSL with the KafkaUser KEDA uses too, and the cluster CA.
        assert settings.kafka_bootstrap_servers.endswith(":9093")
        assert settings.kafka_security_protocol in ("SASL_SSL", "SSL"), f"{name}: PLAINTEXT to a TLS listener"
        assert kafka_client["tls"] == "enable"
        if settings.kafka_security_protocol == "SASL_SSL":
            assert kafka_client["sasl"] == settings.kafka_sasl_mechanism.lower().replace("-sha-", "_sha")
            assert settings.kafka_sasl_username == kafka_client["username"]
            assert settings.kafka_sasl_password is None, "the password comes from a mounted file"
            assert settings.kafka_sasl_password_file is not None
        assert settings.kafka_ssl_cafile is not None
        assert settings.create_topics is False, "Strimzi manages the topics"
        for value in env.values():
            if value.startswith("/"):
                _file_in_volume(name, value)
        if name in TENANCY_ENFORCED:
            assert settings.tenants_file is not None, f"{name}: CLD_TENANTS_FILE"
            assert settings.tenancy_mode == "required"
            assert _file_in_volume(name, str(settings.tenants_file))["secret"]["secretName"] == "cld-tenants"
        else:
            assert "CLD_TENANTS_FILE" not in env, f"{name} does not read the registry: do not mount it"
        if name in deadletter_writers():
            assert settings.deadletter_key is None, f"{name}: the dead-letter key comes from a mounted file"
            assert settings.deadletter_key_file is not None, f"{name} writes dead letters: CLD_DEADLETTER_KEY_FILE"
            key = _file_in_volume(name, str(settings.deadletter_key_file))
            assert key["secret"]["secretName"] == "cld-deadletter-key", name
            assert key["readOnly"] is True, name
        else:
            assert "CLD_DEADLETTER_KEY_FILE" not in env, f"{name} writes no dead letters: do not mount the key"
            assert "CLD_DEADLETTER_KEY" not in env, name
        if name == "pseudonymisation":
            assert settings.pseudo_key is None
            assert settings.pseudo_key_file is not None
            assert _file_in_volume(name, str(settings.pseudo_key_file))["secret"]["secretName"] == "cld-pseudo-key"
        else:
            assert "CLD_PSEUDO_KEY_FILE" not in env, name
            assert "CLD_PSEUDO_KEY" not in env, name
        if name == "submission":
            assert settings.transport == "mesh"
            mesh = MeshSettings()
            assert mesh.url.startswith("https://")
            assert mesh.password is None
            assert mesh.password_file is not None
            assert mesh.shared_key is None
            assert mesh.shared_key_file is not None
            assert mesh.client_cert is not None
            assert mesh.ca_cert is not None
            state = _file_in_volume(name, str(settings.state_dir))
            assert state["readOnly"] is False
            assert state["persistentVolumeClaim"]["claimName"] in _of_kind("PersistentVolumeClaim")
        else:
            assert not any(key.startswith(("CLD_MESH_", "CLD_SUBMISSION_STATE")) for key in env), name


def test_submission_is_a_single_writer_on_its_state_volume() -> None:
    deployment = _of_kind("Deployment")["cld-submission"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert all(obj["spec"]["scaleTargetRef"]["name"] != "cld-submission" for obj in _of_kind("ScaledObject").values())
    (claim,) = _of_kind("PersistentVolumeClaim").values()
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    header = (K8S / "submission.yaml").read_text(encoding="utf-8").split("apiVersion:", 1)[0]
    assert "cld.records.validated.v1" in header
    assert "replicas: 1" in header


def test_secret_template_holds_no_real_secret() -> None:
    harmless = {"scram_sha512", "enable", "cld-mesh"}
    for name, secret in _of_kind("Secret").items():
        assert "data" not in secret, f"{name}: use stringData placeholders in the template"
        for key, value in secret["stringData"].items():
            assert value.startswith("REPLACE") or value in harmless, f"{name}.{key} looks like a real value"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert "secret.template.yaml" not in kustomization["resources"]


def test_scaled_objects_scale_each_consumer_on_its_group_lag() -> None:
    scaled = _of_kind("ScaledObject")
    auth = _of_kind("TriggerAuthentication")
    deployments = _of_kind("Deployment")
    assert set(scaled) == {f"cld-{name}" for name in SCALED}
    for name, group in SCALED.items():
        obj = scaled[f"cld-{name}"]
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        spec = obj["spec"]
        assert spec["scaleTargetRef"]["name"] in deployments
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert "replicas" not in deployments[spec["scaleTargetRef"]["name"]]["spec"], "KEDA owns replicas"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= 6  # 6 partitions
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        metadata = trigger["metadata"]
        assert metadata["consumerGroup"] == group
        assert metadata["bootstrapServers"]
        assert int(metadata["lagThreshold"]) > 0
        assert metadata.get("topic") in (*TOPICS, None)
        assert trigger["authenticationRef"]["name"] in auth
    for obj in auth.values():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        secrets = _of_kind("Secret")
        for ref in obj["spec"]["secretTargetRef"]:
            assert ref["key"] in secrets[ref["name"]]["stringData"], ref


def test_kafka_topics_partitions_and_retention() -> None:
    topics = {doc["spec"]["topicName"]: doc for doc in _of_kind("KafkaTopic").values()}
    assert set(topics) == set(TOPICS)
    for name, doc in topics.items():
        assert doc["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert doc["metadata"]["labels"]["strimzi.io/cluster"]
        spec = doc["spec"]
        assert spec["partitions"] == 6
        assert spec["replicas"] >= 1
        config = spec["config"]
        if name == "cld.submissions.v1":
            assert config["cleanup.policy"] == "compact" or config["retention.ms"] == -1
        else:
            assert config["retention.ms"] == RETENTION_MS[name], name
        # the same configs the services create the topic with (cld_runtime.topics.TOPIC_CONFIGS)
        for key, value in TOPIC_CONFIGS[name].items():
            assert str(config[key]) == value, (name, key)
        assert doc["metadata"]["annotations"]["cld-mesh/identifiable"] in {"true", "false", "pseudonymised"}


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.template.yaml"}
    assert set(kustomization["resources"]) == files


def test_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (optional: the structural checks above do not need it)")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    kinds = Counter(doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc)
    assert kinds["Deployment"] == 4
    assert kinds["ScaledObject"] == 2
    assert kinds["PersistentVolumeClaim"] == 1
    assert kinds["KafkaTopic"] == 5
    assert kinds["Secret"] == 0
