"""Label conventions shared by every component.

Kubernetes' recommended `app.kubernetes.io/*` labels identify what a resource is; the
`platform.io/*` labels are this platform's contract (tenancy, tier, environment) that the
policy pack, network policies and Prometheus rules select on.
"""

from __future__ import annotations

# The platform.io labels are defined once, in the contract the policy pack reads them by.
from policies.platform_rules.contract import CAPACITY_LABEL as CAPACITY
from policies.platform_rules.contract import COST_CENTER_LABEL as COST_CENTER
from policies.platform_rules.contract import ENVIRONMENT_LABEL as ENVIRONMENT
from policies.platform_rules.contract import TENANT_LABEL as TENANT
from policies.platform_rules.contract import TIER_LABEL as TIER

__all__ = [
    "CAPACITY",
    "COST_CENTER",
    "ENVIRONMENT",
    "MANAGED_BY",
    "PART_OF",
    "TENANT",
    "TIER",
    "namespace_selector",
    "recommended",
]

PART_OF = "gpu-platform"
MANAGED_BY = "pulumi"


def recommended(
    name: str, component: str, *, instance: str | None = None, version: str | None = None
) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    if instance:
        labels["app.kubernetes.io/instance"] = instance
    if version:
        labels["app.kubernetes.io/version"] = version
    return labels


def namespace_selector(namespace: str) -> dict[str, dict[str, str]]:
    """Selects one namespace by the immutable label the API server sets on every namespace."""
    return {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
