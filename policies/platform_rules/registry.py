"""Every rule, once: the CrossGuard pack and the offline check both read REGISTRY.

Rules register themselves with `@rule` in their modules; importing the modules here is all it
takes to list them, in this order.
"""

from __future__ import annotations

from typing import Any

from . import capacity, guardrails, placement, quota_fit, security  # noqa: F401  (imported to register)
from .config import PackConfig, PolicyConfig
from .model import Resource, Violation
from .rule import RULES, Rule, checked

REGISTRY: list[Rule] = list(RULES)


def evaluate(resources: list[Resource], config: dict[str, Any] | None = None) -> list[Violation]:
    """Run every rule as the pack would: resource rules on each resource, stack rules on the set."""
    pack = PackConfig.from_mapping(config)
    stack_settings = PolicyConfig.resolve(pack, resources)
    resource_settings = PolicyConfig.resolve(pack, [])
    violations: list[Violation] = []
    for rule in REGISTRY:
        if rule.scope == "resource":
            for resource in resources:
                violations.extend(
                    Violation(rule.name, rule.level, resource.display, m)
                    for m in checked(rule, resource, resource_settings)
                )
        else:
            violations.extend(
                Violation(rule.name, rule.level, where, m) for where, m in checked(rule, resources, stack_settings)
            )
    return violations
