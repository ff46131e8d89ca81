"""Rules register beside their code; the framework resolves the stack's settings once and hands them over."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from policies.platform_rules import REGISTRY, PolicyConfig, evaluate, rule
from policies.platform_rules import config as config_module
from tests.policies.conftest import capacity, fake_pool, tenant_namespace

# The package exports the decorator under the module's own name, so reach the module itself.
rule_module = sys.modules["policies.platform_rules.rule"]
RULE_MODULES = {"capacity", "guardrails", "placement", "quota_fit", "security"}


def test_every_rule_is_declared_in_a_rule_module():
    assert {r.fn.__module__.rsplit(".", 1)[-1] for r in REGISTRY} == RULE_MODULES
    registry = (Path(__file__).resolve().parents[2] / "policies" / "platform_rules" / "registry.py").read_text()
    assert "\n@rule(" not in registry and "Rule(" not in registry, "registry.py only collects"


def test_the_decorator_takes_keyword_fields_only_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(rule_module, "RULES", [])
    with pytest.raises(TypeError):
        rule("x", "y", "mandatory", "low")  # type: ignore[misc]

    @rule(name="example", description="An example.", level="advisory", severity="low")
    def example(resources, config):
        yield from ()

    assert [r.name for r in rule_module.RULES] == ["example"] and rule_module.RULES[0].scope == "stack"
    with pytest.raises(ValueError, match="registered twice"):
        rule(name="example", description="Again.", level="advisory", severity="low")(example)


def test_settings_are_resolved_once_per_evaluation(monkeypatch):
    calls = []
    original = config_module.PolicyConfig.resolve.__func__

    def counting(cls, pack, resources):
        calls.append(len(resources))
        return original(cls, pack, resources)

    monkeypatch.setattr(config_module.PolicyConfig, "resolve", classmethod(counting))
    resources = [capacity(), *fake_pool(), *tenant_namespace("acme", "acme")]
    evaluate(resources)
    # Once with the stack (every stack rule), once without (resource rules see one resource at a time).
    assert sorted(calls) == [0, len(resources)]


def test_resource_rules_get_the_pack_config_only():
    settings = PolicyConfig.resolve(config_module.PackConfig(), [])
    assert settings.capacity["gpu"].amount == 0 and settings.tenants == {}


def _pack_policies():
    pack_dir = str(Path(__file__).resolve().parents[2] / "policies")
    sys.path.insert(0, pack_dir)
    try:
        from platform_rules.pack import policies  # the import path the pack's __main__.py uses
    finally:
        sys.path.remove(pack_dir)
    return policies()


def _args(resources, config):
    items = [SimpleNamespace(resource_type=r.type, name=r.name, urn=r.urn, props=r.props) for r in resources]
    return SimpleNamespace(resources=items, get_config=lambda: config)


def test_the_crossguard_pack_resolves_settings_with_the_stack():
    # The record says 80 GPUs and share 0.9; the pool has 8 and the pack keeps 30%: 3 GPUs is 38%.
    resources = [capacity(gpu="80", share="0.9"), *fake_pool(8.0), *tenant_namespace("acme", "acme")]
    next(r for r in resources if r.kind == "ResourceQuota").props["spec"]["hard"]["requests.nvidia.com/gpu"] = "3"
    share = next(p for p in _pack_policies() if p.name == "tenant-capacity-share")
    reported = []
    share.validate(_args(resources, {}), lambda message, urn=None: reported.append((message, urn)))
    [(message, urn)] = reported
    assert "38% of the cluster's 8" in message and "above the 30% limit" in message
    assert urn is None  # "tenant acme" is no resource: CrossGuard reports it against the stack
    # The pack's own configuration may loosen what the stack may not.
    reported.clear()
    share.validate(_args(resources, {"maxTenantShare": 0.5}), lambda message, urn=None: reported.append(message))
    assert reported == []


def test_the_contract_is_what_the_program_and_the_gateway_use():
    import components.labels as labels
    from components.tenant import hash_api_key
    from infra.quantity import parse_quantity
    from policies.platform_rules import contract
    from services.gateway.config import hash_key

    assert (labels.TENANT, labels.TIER, labels.ENVIRONMENT, labels.COST_CENTER, labels.CAPACITY) == (
        contract.TENANT_LABEL,
        contract.TIER_LABEL,
        contract.ENVIRONMENT_LABEL,
        contract.COST_CENTER_LABEL,
        contract.CAPACITY_LABEL,
    )
    assert hash_api_key is contract.hash_api_key and parse_quantity is contract.parse_quantity
    # The gateway ships without the pack, so it keeps its own hash: it must agree with the contract's.
    assert hash_key("sk-example") == contract.hash_api_key("sk-example")


def test_the_contract_is_standard_library_only():
    import ast

    source = Path(__file__).resolve().parents[2] / "policies" / "platform_rules"
    for name in ("contract.py", "quantity.py"):
        tree = ast.parse((source / name).read_text())
        imported = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        } | {
            node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0
        }
        assert imported <= set(sys.stdlib_module_names), (name, imported - set(sys.stdlib_module_names))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "nan", "1e400x"])
def test_quantities_that_would_switch_a_comparison_off_are_refused(bad):
    from policies.platform_rules.quantity import parse_quantity

    with pytest.raises(ValueError):
        parse_quantity(bad)


def test_a_rule_that_cannot_read_a_resource_fails_closed(healthy):
    # A quota whose `hard` is not a mapping: no rule may crash, and none may pass it silently.
    quota = next(r for r in healthy if r.kind == "ResourceQuota" and r.namespace == "acme")
    quota.props["spec"]["hard"] = 5.0
    violations = evaluate(healthy)
    failed = [v for v in violations if "could not evaluate the stack (TypeError" in v.message]
    assert failed and all(v.level == "mandatory" and v.resource == "the stack" for v in failed)
    assert {v.policy for v in failed} >= {"tenant-capacity-share", "workloads-fit-quota"}
