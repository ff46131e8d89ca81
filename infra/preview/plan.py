"""The human-readable plan: per tenant its namespaces, quota, share of capacity and keys."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from infra.config import StackConfig
from infra.quantity import format_bytes, format_cpu

# Quota'd resources measured against capacity: (label, quota field, capacity field).
SHARED_RESOURCES = [
    ("requests.cpu", "cpu", "cpu"),
    ("limits.cpu", "cpu_limit", "cpu"),
    ("requests.memory", "memory", "memory"),
    ("limits.memory", "memory_limit", "memory"),
    ("requests.nvidia.com/gpu", "gpu", "gpu"),
]


def _share(amount: Decimal, capacity: Decimal) -> float | None:
    return float(amount / capacity) if capacity else None


def tenant_plan(config: StackConfig, outputs: dict[str, Any]) -> dict[str, Any]:
    """Plan data for report.json and the printed table; key values never enter it."""
    capacity = config.platform.capacity
    exported = outputs.get("tenants", {})
    tenants, totals = [], {label: Decimal(0) for label, _, _ in SHARED_RESOURCES}
    for tenant in config.tenants:
        quota = config.tenant_quota(tenant)
        count = len(tenant.namespaces)
        held = {label: Decimal(getattr(quota, field)) * count for label, field, _ in SHARED_RESOURCES}
        for label, amount in held.items():
            totals[label] += amount
        shares = {
            label: _share(held[label], Decimal(getattr(capacity, cap_field)))
            for label, _, cap_field in SHARED_RESOURCES
        }
        hashes = exported.get(tenant.name, {}).get("apiKeyHashes", {})
        tenants.append(
            {
                "name": tenant.name,
                "tier": tenant.tier,
                "namespaces": tenant.namespaces,
                "quotaPerNamespace": {
                    "cpu": format_cpu(quota.cpu),
                    "cpuLimit": format_cpu(quota.cpu_limit),
                    "memory": format_bytes(quota.memory),
                    "memoryLimit": format_bytes(quota.memory_limit),
                    "gpu": quota.gpu,
                    "pods": quota.pods,
                },
                "share": shares,
                "maxShare": max((s for s in shares.values() if s is not None), default=0.0),
                "apiKeys": [{"id": key_id, "sha256Prefix": hashes.get(key_id, "")[:12]} for key_id in tenant.api_keys],
            }
        )
    total_shares = {
        label: _share(totals[label], Decimal(getattr(capacity, cap_field))) for label, _, cap_field in SHARED_RESOURCES
    }
    return {
        "capacity": {"cpu": format_cpu(capacity.cpu), "memory": format_bytes(capacity.memory), "gpu": capacity.gpu},
        "maxTenantShare": config.platform.max_tenant_share,
        "overSubscriptionRatio": config.platform.over_subscription_ratio,
        "tenants": tenants,
        "totals": {"share": total_shares},
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def render(stack: str, plan: dict[str, Any], console: Console) -> None:
    cap = plan["capacity"]
    console.print(
        f"[bold]Stack {stack}[/]: capacity {cap['cpu']} CPU, {cap['memory']} memory, {cap['gpu']} GPU; "
        f"max tenant share {plan['maxTenantShare']:.0%}, over-subscription ×{plan['overSubscriptionRatio']:g}"
    )
    table = Table(show_lines=False)
    for column in (
        "tenant",
        "tier",
        "namespaces",
        "quota per namespace (cpu/limit, mem/limit, gpu, pods)",
        "share",
        "keys",
    ):
        table.add_column(column)
    for tenant in plan["tenants"]:
        q = tenant["quotaPerNamespace"]
        share = tenant["maxShare"]
        flag = "" if share <= plan["maxTenantShare"] + 1e-9 else " [red](over cap)[/]"
        table.add_row(
            tenant["name"],
            tenant["tier"],
            ", ".join(tenant["namespaces"]),
            f"{q['cpu']}/{q['cpuLimit']}, {q['memory']}/{q['memoryLimit']}, {q['gpu']}, {q['pods']}",
            f"{_pct(share)}{flag}",
            ", ".join(f"{k['id']} (sha256 {k['sha256Prefix']}…)" for k in tenant["apiKeys"]),
        )
    console.print(table)
    totals = plan["totals"]["share"]
    console.print(
        "Totals of all tenants vs capacity: " + ", ".join(f"{label} {_pct(value)}" for label, value in totals.items())
    )
