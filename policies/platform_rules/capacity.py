"""Capacity rules: no tenant above its share of the cluster; autoscaling that fits its quota."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal

from .model import PolicyConfig, Resource, pod_requests, quantity, tenant_namespaces

# ResourceQuota key -> capacity key.
SHARED = {
    "requests.cpu": "cpu",
    "limits.cpu": "cpu",
    "requests.memory": "memory",
    "limits.memory": "memory",
    "requests.nvidia.com/gpu": "gpu",
}
# Per-pod request name -> ResourceQuota key that bounds it.
REQUEST_QUOTA = {"cpu": "requests.cpu", "memory": "requests.memory", "nvidia.com/gpu": "requests.nvidia.com/gpu"}


def _quotas(resources: list[Resource]) -> list[Resource]:
    """The namespaces' overall quotas. A scoped quota (`scopes`/`scopeSelector`, e.g. the one that forbids
    other tiers' PriorityClasses) bounds only the pods it selects, so it says nothing about the whole."""
    return [
        r
        for r in resources
        if r.kind == "ResourceQuota"
        and not ((r.props.get("spec") or {}).get("scopeSelector") or (r.props.get("spec") or {}).get("scopes"))
    ]


def _fmt(value: Decimal) -> str:
    return f"{value.normalize():f}" if value < 2**20 else f"{(value / 2**30).normalize():f}Gi"


def tenant_capacity_share(resources: list[Resource], config: PolicyConfig) -> Iterator[tuple[str, str]]:
    config = config.with_stack(resources)
    owners = tenant_namespaces(resources)
    capacity = {key: quantity(value) for key, value in config.capacity.items()}
    held: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    where: dict[str, list[str]] = defaultdict(list)
    for quota in _quotas(resources):
        tenant = owners.get(quota.namespace or "")
        if not tenant:
            continue
        where[tenant].append(quota.namespace)
        hard = (quota.props.get("spec") or {}).get("hard") or {}
        for key in SHARED:
            if key in hard:
                held[tenant][key] += quantity(hard[key])
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for tenant in sorted(held):
        for key, amount in held[tenant].items():
            totals[key] += amount
            total = capacity.get(SHARED[key])
            if not total:
                continue
            limit = total * Decimal(str(config.max_tenant_share))
            if amount > limit:
                yield (
                    f"tenant {tenant}",
                    f"tenant {tenant!r} holds {key}={_fmt(amount)} across namespaces {', '.join(sorted(where[tenant]))}: "
                    f"{amount / total:.0%} of the cluster's {_fmt(total)}, above the {config.max_tenant_share:.0%} "
                    f"limit ({_fmt(limit)}); lower its quota or its environments",
                )
    for key, amount in totals.items():
        total = capacity.get(SHARED[key])
        if total and amount > total * Decimal(str(config.over_subscription_ratio)):
            yield (
                "all tenants",
                f"all tenants together hold {key}={_fmt(amount)}, more than capacity {_fmt(total)} x over-subscription "
                f"{config.over_subscription_ratio:g}; raise capacity or the ratio, or shrink quotas",
            )


def autoscaling_fits_quota(resources: list[Resource], config: PolicyConfig) -> Iterator[tuple[str, str]]:
    owners = tenant_namespaces(resources)
    quotas = {q.namespace: (q.props.get("spec") or {}).get("hard") or {} for q in _quotas(resources)}
    targets = {(r.namespace, r.kind, r.metadata.get("name")): r for r in resources if r.pod_spec() is not None}
    for hpa in (r for r in resources if r.kind == "HorizontalPodAutoscaler"):
        namespace = hpa.namespace or ""
        tenant = owners.get(namespace)
        if not tenant or namespace not in quotas:
            continue
        spec = hpa.props.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        target = targets.get((namespace, ref.get("kind"), ref.get("name")))
        if target is None:
            continue
        replicas = int(spec.get("maxReplicas") or 0)
        for name, per_pod in pod_requests(target.pod_spec()).items():
            key = REQUEST_QUOTA.get(name)
            if not key or key not in quotas[namespace]:
                continue
            needed, allowed = per_pod * replicas, quantity(quotas[namespace][key])
            if needed > allowed:
                yield (
                    hpa.display,
                    f"HPA {namespace}/{hpa.metadata.get('name')} of tenant {tenant!r} may scale to {replicas} pods x "
                    f"{_fmt(per_pod)} {name} = {_fmt(needed)}, above the namespace quota {key}={_fmt(allowed)}; "
                    "lower maxReplicas or raise the quota",
                )
