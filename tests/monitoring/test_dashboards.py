"""Every dashboard query parses and uses only catalog metrics or the platform's recording rules."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from components.metrics_catalog import ENGINE_METRICS, GATEWAY_METRICS, GPU_METRICS
from components.monitoring_rules import rule_groups
from infra.config import Pricing, Thresholds
from tests.monitoring.conftest import PROMTOOL, needs_promtool

DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "components" / "dashboards").glob("*.json"))
GRAFANA_VARIABLES = {
    "$tenant": "acme",
    "$__range_s": "3600",
    "$__range": "1h",
    "$__rate_interval": "1m",
    "$__interval": "1m",
}
FUNCTIONS_AND_KEYWORDS = {
    "sum",
    "avg",
    "by",
    "rate",
    "avg_over_time",
    "sum_over_time",
    "histogram_quantile",
    "on",
    "group_left",
    "without",
    "and",
    "or",
    "label_values",
}


def queries(path: Path) -> list[str]:
    model = json.loads(path.read_text())
    return [target["expr"] for panel in model["panels"] for target in panel["targets"]]


def substitute(expr: str) -> str:
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    return expr


def known_metrics() -> set[str]:
    records = {
        rule["record"]
        for group in rule_groups({"a": "a"}, {"a": "gold"}, Thresholds(), Pricing(), "gw")
        for rule in group["rules"]
        if "record" in rule
    }
    counters = {name + suffix for name in GATEWAY_METRICS for suffix in ("", "_total", "_bucket", "_sum", "_count")}
    return records | counters | set(ENGINE_METRICS) | set(GPU_METRICS)


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_groupings = re.sub(r"\b(by|on|without|group_left|group_right|ignoring)\s*\([^)]*\)", "", without_labels)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_groupings)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges))
    return {t for t in tokens if t not in FUNCTIONS_AND_KEYWORDS and not re.fullmatch(r"e\d*", t)}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_uses_only_known_metrics(path):
    unknown = {name for expr in queries(path) for name in metric_names(substitute(expr))} - known_metrics()
    assert unknown == set(), f"{path.name} queries metrics outside the catalog: {unknown}"


@needs_promtool
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_queries_parse(path, tmp_path):
    # promtool has no expression checker of its own, but it parses every rule's expression.
    rules = [{"record": f"dashboard:query{i}:check", "expr": substitute(expr)} for i, expr in enumerate(queries(path))]
    file = tmp_path / "queries.yaml"
    file.write_text(yaml.safe_dump({"groups": [{"name": path.stem, "rules": rules}]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tenant_dashboard_is_templated_by_tenant():
    model = json.loads(next(p for p in DASHBOARDS if p.stem == "tenant").read_text())
    assert "tenant" in [v["name"] for v in model["templating"]["list"]]
    assert all('tenant="$tenant"' in expr for expr in queries(next(p for p in DASHBOARDS if p.stem == "tenant")))
    assert any("cost" in panel["title"].lower() for panel in model["panels"])


def test_metric_name_extraction_catches_unknown_names():
    assert metric_names('sum by (tenant) (rate(made_up_metric_total{code="200"}[5m]))') == {"made_up_metric_total"}


def test_tenant_cost_panel_is_the_billing_integral():
    # The JSON is static; this keeps it the PromQL components.billing renders for the CLI and rules.
    from components import billing

    model = json.loads(next(p for p in DASHBOARDS if p.stem == "tenant").read_text())
    (panel,) = [p for p in model["panels"] if p["title"] == "Cost over the range"]
    assert panel["targets"][0]["expr"] == billing.cost("$__range", 'tenant="$tenant"')
