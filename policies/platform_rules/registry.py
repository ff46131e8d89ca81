"""Every rule, once: the CrossGuard pack and the offline check both read this list."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import capacity, guardrails, placement, security
from .model import Level, PolicyConfig, Resource, Violation


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    level: Level
    severity: str  # low | medium | high | critical
    scope: str  # "stack": fn(resources, config) -> (resource, message); "resource": fn(resource, config) -> message
    fn: Callable[..., Iterable[Any]]
    uses_config: bool = True


REGISTRY: list[Rule] = [
    Rule(
        "tenant-capacity-share",
        "No tenant holds more than maxTenantShare of the cluster's cpu, memory or GPUs, summed over its namespaces; all tenants together stay within capacity x overSubscriptionRatio.",
        "mandatory",
        "critical",
        "stack",
        capacity.tenant_capacity_share,
    ),
    Rule(
        "autoscaling-fits-quota",
        "An HPA's maxReplicas x its target's per-pod requests fits the namespace quota.",
        "mandatory",
        "high",
        "stack",
        capacity.autoscaling_fits_quota,
    ),
    Rule(
        "gpu-placement",
        "Pods requesting nvidia.com/gpu tolerate the GPU taint, select the GPU pool and limit GPUs to their request; GPU DaemonSet charts tolerate the taint.",
        "mandatory",
        "high",
        "stack",
        placement.gpu_placement,
    ),
    Rule(
        "gpu-taint-toleration-scoped",
        "Pods that request no GPU do not tolerate the GPU taint.",
        "advisory",
        "medium",
        "stack",
        placement.gpu_taint_toleration_scoped,
    ),
    Rule(
        "tenant-guardrails",
        "Every tenant namespace has a GPU-covering ResourceQuota, a LimitRange, a default-deny NetworkPolicy, and no LoadBalancer or NodePort Service.",
        "mandatory",
        "critical",
        "stack",
        guardrails.tenant_guardrails,
    ),
    Rule(
        "workload-security",
        "Workloads in tenant namespaces: not privileged, no host namespaces or hostPath, non-root, no privilege escalation, requests and limits, pinned images.",
        "mandatory",
        "high",
        "stack",
        security.workload_security,
    ),
    Rule(
        "workload-security-platform",
        "The workload-security checks for the platform's own namespaces (advisory).",
        "advisory",
        "medium",
        "stack",
        security.workload_security_platform,
    ),
    Rule(
        "secrets-hygiene",
        "No API key or token in a ConfigMap or a plain container env value.",
        "mandatory",
        "high",
        "resource",
        security.secrets_hygiene,
        uses_config=False,
    ),
]


def evaluate(resources: list[Resource], config: dict[str, Any] | None = None) -> list[Violation]:
    """Run every rule as the pack would: resource rules on each resource, stack rules on the set."""
    settings = PolicyConfig.from_mapping(config)
    violations: list[Violation] = []
    for rule in REGISTRY:
        if rule.scope == "resource":
            for resource in resources:
                violations.extend(
                    Violation(rule.name, rule.level, resource.display, m) for m in rule.fn(resource, settings)
                )
        else:
            violations.extend(Violation(rule.name, rule.level, where, m) for where, m in rule.fn(resources, settings))
    return violations
