"""No tenant above its share of the cluster; all tenants together within capacity x over-subscription."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal

from .config import PolicyConfig
from .model import Resource, fmt, quantity, scoped
from .rule import rule

# ResourceQuota key -> the cluster dimension it takes a share of.
SHARED = {
    "requests.cpu": "cpu",
    "limits.cpu": "cpu",
    "requests.memory": "memory",
    "limits.memory": "memory",
    "requests.nvidia.com/gpu": "gpu",
}


def _held(resources: list[Resource], config: PolicyConfig) -> tuple[dict, dict]:
    """Tenant -> quota key -> amount summed over its namespaces; tenant -> those namespaces."""
    held: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    where: dict[str, set[str]] = defaultdict(set)
    # A scoped quota bounds only the pods it selects: it says nothing about the tenant's share of the whole.
    for quota in (r for r in resources if r.kind == "ResourceQuota" and not scoped(r)):
        tenant = config.tenants.get(quota.namespace or "")
        if not tenant:
            continue
        where[tenant].add(quota.namespace or "")
        hard = (quota.props.get("spec") or {}).get("hard") or {}
        for key in SHARED:
            if key in hard:
                held[tenant][key] += quantity(hard[key])
    return held, where


@rule(
    name="tenant-capacity-share",
    description=(
        "No tenant holds more than maxTenantShare of the cluster's cpu, memory or GPUs, summed over its namespaces; "
        "all tenants together stay within capacity x overSubscriptionRatio. The thresholds are the pack's (a stack "
        "may only tighten them); GPU capacity is bounded by what the GPU pool provides."
    ),
    level="mandatory",
    severity="critical",
)
def tenant_capacity_share(resources: list[Resource], config: PolicyConfig) -> Iterator[tuple[str, str]]:
    yield from config.problems
    held, where = _held(resources, config)
    share, ratio = config.max_tenant_share, config.over_subscription_ratio
    totals: dict[str, Decimal] = defaultdict(Decimal)
    unmeasured: dict[str, list[str]] = defaultdict(list)
    for tenant in sorted(held):
        for key, amount in sorted(held[tenant].items()):
            totals[key] += amount
            capacity = config.capacity[SHARED[key]]
            total = capacity.amount
            if not total:
                # Zero or missing capacity for what a tenant holds: the share cannot be measured, so it fails.
                if amount > 0:
                    unmeasured[key].append(tenant)
                continue
            limit = total * Decimal(str(share.value))
            if amount > limit:
                yield (
                    f"tenant {tenant}",
                    f"tenant {tenant!r} holds {key}={fmt(amount)} across namespaces {', '.join(sorted(where[tenant]))}: "
                    f"{amount / total:.0%} of the cluster's {capacity.describe()}, above the {share.value:.0%} limit "
                    f"({fmt(limit)}; {share.describe(as_percent=True)}); lower its quota or its environments",
                )
    for key, tenants in sorted(unmeasured.items()):
        capacity = config.capacity[SHARED[key]]
        stated = "no capacity" if capacity.amount is None else f"capacity {capacity.describe()}"
        yield (
            "all tenants",
            f"tenants {', '.join(repr(t) for t in tenants)} hold {key} but the cluster has {stated} for "
            f"{SHARED[key]}; declare it in the platform's capacity record (platform.capacity) and give the GPU pool "
            "the nodes that provide it, or set the tiers' quota to 0",
        )
    for key, amount in sorted(totals.items()):
        total = config.capacity[SHARED[key]].amount
        if total and amount > total * Decimal(str(ratio.value)):
            yield (
                "all tenants",
                f"all tenants together hold {key}={fmt(amount)}, more than capacity {fmt(total)} x "
                f"{ratio.describe()}; raise the capacity or shrink quotas",
            )
