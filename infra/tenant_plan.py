"""What `platformctl tenant` prints: each tenant's share of the cluster and keys, and what a removal deletes."""

from __future__ import annotations

from infra.config import StackConfig, Tenant
from infra.quantity import format_bytes, format_cpu
from infra.tenant_edit import shares


def _share(config: StackConfig, tenant: Tenant) -> str:
    """`cpu=12%/25%`: the request's and the limit's share; the 30% rule applies to both."""
    held = shares(config, tenant)
    parts = []
    for key in ("cpu", "memory", "gpu"):
        if key in held:
            limit = held.get(f"{key}_limit")
            parts.append(f"{key}={held[key]:.0%}" + (f"/{limit:.0%}" if limit is not None else ""))
    return " ".join(parts)


def plan_lines(config: StackConfig) -> list[str]:
    """One line per tenant: quota share of the declared capacity (summed over namespaces) and key ids."""
    lines = [
        f"plan: {len(config.tenants)} tenant(s); shares of the cluster's declared capacity "
        f"(limit {config.platform.max_tenant_share:.0%} each)"
    ]
    for tenant in config.tenants:
        lines.append(
            f"  {tenant.name:<16} tier={tenant.tier:<8} costCenter={tenant.cost_center or '-':<10} "
            f"namespaces={','.join(tenant.namespaces):<24} share: {_share(config, tenant):<28} "
            f"apiKeys={','.join(tenant.api_keys)}"
        )
    return lines


def show_lines(config: StackConfig, tenant: Tenant) -> list[str]:
    quota = config.tenant_quota(tenant)
    limits = config.tenant_limits(tenant)
    lines = [
        f"tenant {tenant.name}: tier {tenant.tier}, cost center {tenant.cost_center or '-'}",
        f"  namespaces: {', '.join(tenant.namespaces)}",
        "  quota per namespace: "
        f"cpu {format_cpu(quota.cpu)}/{format_cpu(quota.cpu_limit)} (request/limit), "
        f"memory {format_bytes(quota.memory)}/{format_bytes(quota.memory_limit)}, gpu {quota.gpu}, pods {quota.pods}",
        f"  share of the cluster: {_share(config, tenant)}",
        f"  gateway limits: rpm {limits.rpm}, tpm {limits.tpm}, maxConcurrency {limits.max_concurrency}, "
        f"maxQueue {limits.max_queue}",
        f"  models: {', '.join(tenant.allowed_models) or '-'}",
        f"  workers: {', '.join(f'{w.name} ({w.engine}, {w.gpus} GPU)' for w in tenant.workers) or '-'}",
        f"  API key ids: {', '.join(tenant.api_keys)} (Secret per namespace; values are Pulumi secret outputs)",
    ]
    return lines


def removal_warning(tenant: Tenant, stack: str) -> list[str]:
    keys = ", ".join(tenant.api_keys)
    return [
        f"warning: `pulumi up -s {stack}` will delete tenant {tenant.name!r}:",
        f"  - namespace(s) {', '.join(tenant.namespaces)} and everything in them: workers "
        f"({', '.join(w.name for w in tenant.workers) or 'none'}), their Services, PVCs and model caches",
        "  - its ResourceQuota, LimitRange, NetworkPolicies, RBAC roles and bindings",
        f"  - its API keys ({keys}): clients using them get 401 once the gateway reloads",
        "  - its routes in the gateway",
        "  Its usage stays in Prometheus until retention expires: bill its last period with "
        f"`platformctl chargeback -s {stack}` (it is priced at the tier it last had).",
    ]
