"""Grafana: the provisioned dashboard queries only metrics of the contract in docs/TEAM.md; provisioning."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import grafana_to_promql, metric_names
from tests.deploy.tools import DEPLOY, contract_metrics, require_tool, run

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "cld-overview.json"
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{[^}]*\})?\s*,\s*(\w+)\s*\)\s*$")


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def unknown_metrics(expr: str, contract: set[str]) -> set[str]:
    """Names the contract does not allow: besides its metrics only `up` and FastStream's `faststream_*`."""
    return {n for n in metric_names(expr) if n not in contract and n != "up" and not n.startswith("faststream_")}


def test_contract_table_parses() -> None:
    contract = contract_metrics()
    assert len(contract) >= 16, contract
    assert contract["cld_consumer_lag"] == "gauge"
    assert contract["cld_records_received_total"] == "counter"


def test_scanner_finds_metric_names() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(faststream_x_bucket{a="b"}[5m]))) '
        '+ on (la_code) group_left min(cld_a offset 1d) / ignoring(x) cld_b{c=~"$la_code"} > bool 1e3 '
        "and time() - up"
    )
    assert metric_names(expr) == {"faststream_x_bucket", "cld_a", "cld_b", "up"}


def test_drifted_metric_name_is_reported() -> None:
    contract = set(contract_metrics())
    assert unknown_metrics("sum(rate(cld_records_recieved_total[5m]))", contract) == {"cld_records_recieved_total"}
    assert unknown_metrics("sum(rate(cld_records_received_total[5m])) + faststream_any_total + up", contract) == set()


def test_every_panel_query_names_only_contract_metrics() -> None:
    contract = set(contract_metrics())
    exprs = _exprs(_dashboard())
    assert exprs
    for title, expr in exprs:
        assert metric_names(expr), f"{title}: no metric found in {expr!r}"
        unknown = unknown_metrics(expr, contract)
        assert not unknown, f"panel {title!r} uses {sorted(unknown)}, not in the contract of docs/TEAM.md"


def test_template_variables_use_contract_metrics() -> None:
    contract = set(contract_metrics())
    variables = _dashboard()["templating"]["list"]
    queried = [v for v in variables if v["type"] == "query"]
    assert queried
    for variable in queried:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = _LABEL_VALUES.match(query)
        assert match, query
        assert match.group(1) in contract, query


def test_dashboard_covers_the_operational_views() -> None:
    used = set().union(*(metric_names(expr) for _, expr in _exprs(_dashboard())))
    assert used >= {
        "cld_records_received_total",
        "cld_records_validated_total",
        "cld_records_pseudonymised_total",
        "cld_consumer_lag",
        "cld_deadletters_total",
        "cld_findings_total",
        "cld_submissions",
        "cld_mesh_send_total",
        "cld_mesh_acknowledged_total",
        "cld_submission_deadline_remaining_seconds",
        "cld_risk_min_k",
        "up",
    }
    titles = " ".join(p["title"].lower() for p in _panels(_dashboard()["panels"]))
    for words in ("records per second", "lag", "dead letters", "dq failure share", "top 10", "by state", "mesh"):
        assert words in titles, words


def test_panels_are_well_formed() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "cld-overview"
    panels = list(_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in {"${datasource}", "cld-prometheus"}, panel["title"]


def test_panel_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool has no expression checker; a rule file with one recording rule per query does the job.
    promtool = require_tool("promtool", "bash deploy/prometheus/install.sh")
    rules = [
        {"record": f"dashboard:query:{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(_exprs(_dashboard()))
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    run([promtool, "check", "rules", str(path)])
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "r", "expr": "sum(("}]}]}))
    with pytest.raises(pytest.fail.Exception):
        run([promtool, "check", "rules", str(path)])


def test_provisioning_matches_the_dashboard_and_compose() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "cld-prometheus"
    variable = next(v for v in _dashboard()["templating"]["list"] if v["type"] == "datasource")
    assert variable["current"]["value"] == source["uid"]

    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "cld.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert "PROMETHEUS_URL" in compose["services"]["grafana"]["environment"]
