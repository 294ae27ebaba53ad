"""The METRICS CONTRACT of docs/TEAM.md against what the services really register, without Kafka.

Each service's composition root (``create_app(settings)``) builds its whole metrics registry (domain metrics,
dead letters, consumer lag, FastStream's Prometheus middleware) without connecting to a broker: Kafka is only
reached when the app starts. So the registry each process would serve on ``/metrics`` is inspected here
directly: every contract metric is exposed by some service with exactly the documented type and label names,
no service exposes a ``cld_*`` metric the contract does not name, and no label name anywhere looks like
personal data or an unbounded identifier. The live values are checked against a real Prometheus in
tests/integration/test_prometheus_scrape.py.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics import MetricWrapperBase

from cld_cli.cmd_serve import composition_root
from cld_schemas.events import DeadLetterReason
from tests.deploy.tools import TEAM_MD, contract_metrics

SERVICE_NAMES = ("ingest", "validation", "pseudonymisation", "submission")
TEST_PSEUDO_KEY = "33" * 32

# Label names that would carry personal data (TEAM.md: no NHS number, names, DOB, postcode, free text).
DENY_LABELS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "given_name",
        "family_name",
        "full_name",
        "surname",
        "forename",
        "nhs_number",
        "nhs_no",
        "postcode",
        "post_code",
        "dob",
        "date_of_birth",
        "birth_date",
        "person",
        "person_id",
        "la_person_unique_identifier",
        "address",
        "email",
        "phone",
        "telephone",
        "gender",
        "ethnicity",
        "record",
        "value",
        "detail",
        "message",
        "text",
    }
)
# Parts of a label name that point at a person whatever the rest of the name is (e.g. `client_postcode`).
DENY_PARTS = frozenset({"nhs", "postcode", "dob", "birth", "person", "surname", "forename", "address", "email"})
# Unbounded identifiers: one series per message or per upload would explode the TSDB.
UNBOUNDED_LABELS = frozenset(
    {
        "event_id",
        "event_reference",
        "upload_id",
        "submission_id",
        "message_id",
        "offset",
        "key",
        "payload_sha256",
        "payload_hmac",
    }
)

_ROW = re.compile(r"^\|\s*`?([a-z_:][a-z0-9_:]*)`?\s*\|\s*(counter|gauge|histogram|summary)\s*\|([^|]*)\|")
_PARENTHESES = re.compile(r"\([^()]*\)")


@dataclass(frozen=True)
class ContractMetric:
    name: str
    type: str
    labels: frozenset[str]


@dataclass(frozen=True)
class Exposed:
    service: str
    name: str
    """As scraped: counters with their ``_total`` suffix."""
    type: str
    labels: tuple[str, ...]


def contract(team_md: Path = TEAM_MD) -> dict[str, ContractMetric]:
    """The contract table with its label column (explanations in parentheses dropped)."""
    rows: dict[str, ContractMetric] = {}
    in_contract = False
    for line in team_md.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            in_contract = "metrics contract" in line.lower()
            continue
        match = _ROW.match(line) if in_contract else None
        if match:
            labels = _PARENTHESES.sub("", match.group(3))
            names = frozenset(part.strip().strip("`") for part in labels.split(",") if part.strip())
            rows[match.group(1)] = ContractMetric(match.group(1), match.group(2), names)
    return rows


def exposed(service: str, registry: CollectorRegistry) -> list[Exposed]:
    """Every metric family a registry serves, with its label names (known even before any sample exists)."""
    out: list[Exposed] = []
    # prometheus_client has no public accessor for a collector's label names; a labelled metric without
    # children yields no samples, so its labels can only be read from the collector itself.
    for collector in list(registry._collector_to_names):
        if isinstance(collector, MetricWrapperBase):
            kind = str(collector._type)
            base = str(collector._name)
            name = f"{base}_total" if kind == "counter" else base
            out.append(Exposed(service, name, kind, tuple(collector._labelnames)))
            continue
        for family in collector.collect():
            labels = sorted({k for s in family.samples for k in s.labels if k not in ("le", "quantile")})
            name = f"{family.name}_total" if family.type == "counter" else family.name
            out.append(Exposed(service, name, family.type, tuple(labels)))
    return out


# ---- building each service's registry as its process would ----------------------------------------


def _ingest() -> CollectorRegistry:
    from cld_ingest.service import IngestSettings, create_app

    reg: CollectorRegistry = create_app(IngestSettings()).state.registry
    return reg


def _validation() -> CollectorRegistry:
    from cld_validation.service import ValidationSettings, create_app

    reg: CollectorRegistry = create_app(ValidationSettings()).context.get("registry")
    return reg


def _pseudonymisation() -> CollectorRegistry:
    from cld_pseudonymisation.service import PseudonymisationSettings, create_app

    reg: CollectorRegistry = create_app(PseudonymisationSettings()).context.get("registry")
    return reg


def _submission() -> CollectorRegistry:
    from cld_submission.entrypoints.app import create_app
    from cld_submission.entrypoints.settings import SubmissionSettings

    reg: CollectorRegistry = create_app(SubmissionSettings()).state.registry
    return reg


BUILDERS: dict[str, Callable[[], CollectorRegistry]] = {
    "ingest": _ingest,
    "validation": _validation,
    "pseudonymisation": _pseudonymisation,
    "submission": _submission,
}


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, CollectorRegistry]]:
    """Each service's registry, built by its composition root from a clean ``CLD_*`` environment."""
    tmp = tmp_path_factory.mktemp("metrics-contract")
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith(("CLD_", "KAFKA_")):
                mp.delenv(key)
        # Nothing connects: an address nobody listens on makes any accidental connection fail loudly.
        mp.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
        mp.setenv("CLD_TENANCY_MODE", "open")
        mp.setenv("CLD_PSEUDO_KEY", TEST_PSEUDO_KEY)
        mp.setenv("CLD_SUBMISSION_STATE_DIR", str(tmp / "submission"))
        mp.setenv("CLD_SUBMISSION_EXPORT_DIR", str(tmp / "export"))
        built: dict[str, CollectorRegistry] = {}
        for service in SERVICE_NAMES:
            importlib.import_module(composition_root(service))  # a missing module fails here, by name
            built[service] = BUILDERS[service]()
        yield built


@pytest.fixture(scope="module")
def exposures(registries: dict[str, CollectorRegistry]) -> list[Exposed]:
    return [e for service, reg in registries.items() for e in exposed(service, reg)]


# ---- the table itself --------------------------------------------------------------------------------


def test_contract_table_parses_with_labels() -> None:
    rows = contract()
    assert set(rows) == set(contract_metrics())  # same rows as the shared parser sees
    assert len(rows) >= 16
    assert rows["cld_records_received_total"] == ContractMetric(
        "cld_records_received_total", "counter", frozenset({"la_code", "channel"})
    )
    assert rows["cld_findings_total"].labels == {"la_code", "field", "rule"}
    assert rows["cld_submission_approved_for_next_deadline"].labels == {"la_code"}
    assert rows["cld_consumer_lag"].labels == {"group", "topic", "partition"}
    for row in rows.values():
        assert row.labels, f"{row.name}: no labels parsed"
        assert all(re.fullmatch(r"[a-z_][a-z0-9_]*", label) for label in row.labels), row


def test_the_label_checks_catch_a_bad_label() -> None:
    registry = CollectorRegistry()
    Counter("cld_bad_total", "x", ["la_code", "client_postcode", "event_id"], registry=registry)
    [bad] = exposed("test", registry)
    assert bad.name == "cld_bad_total"
    assert _personal(bad.labels) == ["client_postcode"]
    assert _unbounded(bad.labels) == ["event_id"]


# ---- the contract against the registries ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(contract()))
def test_contract_metric_is_exposed_with_its_type_and_labels(name: str, exposures: list[Exposed]) -> None:
    want = contract()[name]
    found = [e for e in exposures if e.name == name]
    assert found, f"{name}: in the contract of docs/TEAM.md but no service registers it"
    for e in found:
        assert e.type == want.type, f"{name} on {e.service}: type {e.type}, contract says {want.type}"
        assert set(e.labels) == want.labels, (
            f"{name} on {e.service}: labels {sorted(e.labels)}, contract says {sorted(want.labels)}"
        )
        assert len(set(e.labels)) == len(e.labels), f"{name} on {e.service}: a label name repeats"


def test_no_service_exposes_a_cld_metric_outside_the_contract(exposures: list[Exposed]) -> None:
    rows = contract()
    extra = sorted({(e.service, e.name) for e in exposures if e.name.startswith("cld_") and e.name not in rows})
    assert not extra, f"cld_* metrics not in the contract of docs/TEAM.md (add them there or rename): {extra}"


def test_every_service_has_faststream_metrics_and_its_own_health_signals(exposures: list[Exposed]) -> None:
    by_service: dict[str, set[str]] = {}
    for e in exposures:
        by_service.setdefault(e.service, set()).add(e.name)
    for service in SERVICE_NAMES:
        names = by_service.get(service, set())
        assert any(n.startswith("faststream_") for n in names), f"{service}: no FastStream Prometheus middleware"
        assert "faststream_published_messages_total" in names, service
    for service in ("validation", "pseudonymisation", "submission"):  # the consumers
        assert "cld_consumer_lag" in by_service[service], f"{service}: consumes but reports no consumer lag"
        assert "cld_deadletters_total" in by_service[service], f"{service}: consumes but counts no dead letters"
        assert "faststream_received_messages_total" in by_service[service], service


def _personal(labels: tuple[str, ...]) -> list[str]:
    return [label for label in labels if label in DENY_LABELS or DENY_PARTS & set(label.split("_"))]


def _unbounded(labels: tuple[str, ...]) -> list[str]:
    return [label for label in labels if label in UNBOUNDED_LABELS]


def test_no_label_name_looks_like_personal_data_or_an_unbounded_id(exposures: list[Exposed]) -> None:
    assert exposures
    personal = sorted({(e.service, e.name, label) for e in exposures for label in _personal(e.labels)})
    unbounded = sorted({(e.service, e.name, label) for e in exposures for label in _unbounded(e.labels)})
    assert not personal, f"label names that look like personal data: {personal}"
    assert not unbounded, f"label names that carry unbounded identifiers: {unbounded}"


# ---- series that must exist at 0 from the start --------------------------------------------------------


def _samples(registry: CollectorRegistry, name: str) -> list[dict[str, Any]]:
    return [{**s.labels, "__value__": s.value} for f in registry.collect() for s in f.samples if s.name == name]


def test_mesh_outcome_counters_start_at_zero(registries: dict[str, CollectorRegistry]) -> None:
    reg = registries["submission"]
    send = {s["outcome"]: s["__value__"] for s in _samples(reg, "cld_mesh_send_total")}
    acknowledged = {s["outcome"]: s["__value__"] for s in _samples(reg, "cld_mesh_acknowledged_total")}
    assert send == {"success": 0.0, "retry": 0.0, "failed": 0.0}
    assert acknowledged == {"acknowledged": 0.0, "failed": 0.0}


@pytest.mark.parametrize("service", ["validation", "pseudonymisation", "submission"])
def test_dead_letter_counters_start_at_zero_for_every_reason(
    service: str, registries: dict[str, CollectorRegistry]
) -> None:
    samples = _samples(registries[service], "cld_deadletters_total")
    seen = {(s["service"], s["reason"]): s["__value__"] for s in samples}
    assert seen == {(service, reason.value): 0.0 for reason in DeadLetterReason}
