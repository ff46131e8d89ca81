"""Tier presets (gold/silver/bronze) and their merge with a stack's overrides.

The presets scale up small quota examples (gold 8/12 cores, 16/24 Gi; silver 1/2 cores;
bronze 400m/800m) so that one namespace of each tier can run a small GPU worker.
Quotas are per namespace: a tenant with three environments holds three of them.
"""

from __future__ import annotations

from functools import lru_cache

from infra.config.tenants import GatewayLimits, Quota, Tier

PRESETS: dict[str, Tier] = {
    "gold": Tier(
        quota=Quota(
            cpu="8", cpu_limit="12", memory="16Gi", memory_limit="24Gi", gpu=2, pods=20, pvcs=5, storage="100Gi"
        ),
        gateway=GatewayLimits(rpm=600, tpm=200_000, max_concurrency=32, max_queue=64),
        priority=100_000,
        weight=4,
        preemption="PreemptLowerPriority",
    ),
    "silver": Tier(
        quota=Quota(cpu="4", cpu_limit="8", memory="8Gi", memory_limit="16Gi", gpu=1, pods=10, pvcs=2, storage="20Gi"),
        gateway=GatewayLimits(rpm=300, tpm=100_000, max_concurrency=16, max_queue=32),
        priority=50_000,
        weight=2,
        preemption="PreemptLowerPriority",
    ),
    "bronze": Tier(
        quota=Quota(cpu="2", cpu_limit="4", memory="4Gi", memory_limit="8Gi", gpu=1, pods=5, pvcs=1, storage="10Gi"),
        gateway=GatewayLimits(rpm=60, tpm=20_000, max_concurrency=4, max_queue=8),
        priority=10_000,
        weight=1,
        preemption="Never",
    ),
}

# A tier defined from scratch in a stack starts from bronze, the most conservative preset.
_BASE_FOR_NEW_TIERS = "bronze"


def resolve_tiers(overrides: dict[str, Tier]) -> dict[str, Tier]:
    """Presets with the stack's overrides applied; new tier names start from bronze."""
    return _resolve(tuple(sorted(overrides.items())))


@lru_cache(maxsize=64)
def _resolve(overrides: tuple[tuple[str, Tier], ...]) -> dict[str, Tier]:
    tiers = dict(PRESETS)
    for name, tier in overrides:
        tiers[name] = tier.merged_over(PRESETS.get(name, PRESETS[_BASE_FOR_NEW_TIERS]))
    return tiers
