"""The platform's Prometheus rules: promtool check and unit tests, and full coverage of every rule."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from components.monitoring_rules import rule_groups
from infra.config import Pricing, Thresholds
from tests.monitoring.conftest import PROMTOOL, needs_promtool

HERE = Path(__file__).resolve().parent
UNIT_TESTS = HERE / "promtool" / "platform_rules_test.yaml"


def render(directory: Path) -> Path:
    """The rules with the tenants, prices and thresholds the promtool unit tests are written for."""
    groups = rule_groups(
        {"acme": "acme", "globex": "globex", "globex-dev": "globex"},
        {"acme": "gold", "globex": "silver"},
        Thresholds(),
        Pricing(tier_multipliers={"gold": 2.0}),
        "platform-gateway",
        {"acme": "cc-1001"},
    )
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(UNIT_TESTS, directory / UNIT_TESTS.name)
    return path


@needs_promtool
def test_promtool_check_rules(tmp_path):
    result = subprocess.run([PROMTOOL, "check", "rules", str(render(tmp_path))], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests(tmp_path):
    render(tmp_path)
    result = subprocess.run([PROMTOOL, "test", "rules", UNIT_TESTS.name], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_recording_rule_and_alert_has_a_unit_test(tmp_path):
    groups = yaml.safe_load(render(tmp_path).read_text())["groups"]
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    tested_exprs = {t["expr"] for case in tests for t in case.get("promql_expr_test", [])}
    tested_alerts = {t["alertname"] for case in tests for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    records = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    assert records - tested_exprs == set()
    assert alerts - tested_alerts == set()


def test_recording_rules_follow_level_metric_operations():
    for group in rule_groups({"a": "a"}, {"a": "gold"}, Thresholds(), Pricing(), "gw"):
        for rule in group["rules"]:
            if "record" in rule:
                assert len(rule["record"].split(":")) == 3, rule["record"]
            else:
                assert rule["labels"]["severity"] in ("info", "warning", "critical")
                assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])


def test_runbook_anchors_exist():
    runbooks = (Path(__file__).resolve().parents[2] / "components" / "monitoring-runbooks.md").read_text().lower()
    for group in rule_groups({"a": "a"}, {"a": "gold"}, Thresholds(), Pricing(), "gw"):
        for rule in group["rules"]:
            if "alert" in rule:
                assert f"## {rule['alert'].lower()}" in runbooks, rule["alert"]
