"""Label conventions shared by every component.

Kubernetes' recommended `app.kubernetes.io/*` labels identify what a resource is; the
`platform.io/*` labels are this platform's contract (tenancy, tier, environment) that the
policy pack, network policies and Prometheus rules select on.
"""

from __future__ import annotations

PART_OF = "gpu-platform"
MANAGED_BY = "pulumi"

TENANT = "platform.io/tenant"
TIER = "platform.io/tier"
ENVIRONMENT = "platform.io/environment"
COST_CENTER = "cost-center"
CAPACITY = "platform.io/capacity"


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
