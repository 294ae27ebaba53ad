"""Kubernetes: core objects against the bundled OpenAPI schemas (kubernetes-validate, offline); CRDs structurally."""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections import Counter
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.tools import CONSUMER_GROUPS, DEPLOY, SERVICES, TOPICS

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.31"
CORE_KINDS = {"Namespace", "ServiceAccount", "ConfigMap", "Secret", "Deployment", "Service"}
RETENTION_MS = {
    "cld.events.raw.v1": 14 * 86_400_000,
    "cld.records.validated.v1": 14 * 86_400_000,
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
        {"Namespace": 1, "ServiceAccount": 1, "ConfigMap": 1, "Secret": 3, "Deployment": 4, "Service": 4}
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
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, (name, probe)
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
        assert data[f"{name.upper()}_PORT"] == str(port)


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
    assert set(scaled) == {f"cld-{name}" for name in CONSUMER_GROUPS}
    for name, group in CONSUMER_GROUPS.items():
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
    assert kinds["ScaledObject"] == 3
    assert kinds["KafkaTopic"] == 5
    assert kinds["Secret"] == 0
