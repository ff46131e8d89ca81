"""`platformctl usage`: what each tenant uses now against its quota, and its share of the cluster.

Per tenant and namespace: cpu, memory and GPU requests and limits and pods in use against the
ResourceQuota's hard limits, from kube-state-metrics' `kube_resourcequota` (with `--prometheus`)
or the API server's ResourceQuota status (with `--kubeconfig`); with Prometheus also the GPUs'
average utilisation and the tokens of the last `--since`. Shares are the tenant's in-use
requests, summed over its namespaces, over the stack's declared capacity (the figure the 30%
rule is measured against).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from components import billing
from components.tenant import QUOTA_NAME
from infra.config import StackConfig
from infra.prometheus_api import PrometheusAPI

# ResourceQuota keys shown, in order, with the unit each is reported in.
RESOURCES = {
    "requests.cpu": "cores",
    "limits.cpu": "cores",
    "requests.memory": "bytes",
    "limits.memory": "bytes",
    "requests.nvidia.com/gpu": "gpus",
    "pods": "pods",
}
# The request that each capacity share is computed from.
SHARES = {"cpu": "requests.cpu", "memory": "requests.memory", "gpu": "requests.nvidia.com/gpu"}


@dataclass
class NamespaceUsage:
    namespace: str
    used: dict[str, float] = field(default_factory=dict)
    hard: dict[str, float] = field(default_factory=dict)
    gpu_utilization: float | None = None


@dataclass
class TenantUsage:
    tenant: str
    tier: str
    namespaces: list[NamespaceUsage]
    tokens: dict[str, int] | None = None

    def used(self, resource: str) -> float:
        return sum(ns.used.get(resource, 0.0) for ns in self.namespaces)

    def hard(self, resource: str) -> float:
        return sum(ns.hard.get(resource, 0.0) for ns in self.namespaces)


def tenants_of(config: StackConfig, only: str | None) -> dict[str, tuple[str, list[str]]]:
    tenants = {t.name: (t.tier, t.namespaces) for t in config.tenants}
    if only is not None and only not in tenants:
        raise ValueError(f"--tenant {only!r}: not a tenant of this stack (tenants: {', '.join(sorted(tenants))})")
    return {only: tenants[only]} if only else tenants


def from_prometheus(
    api: PrometheusAPI, tenants: dict[str, tuple[str, list[str]]], since: str = "1h", at: float | None = None
) -> list[TenantUsage]:
    namespaces = sorted(ns for _, spaces in tenants.values() for ns in spaces)
    matcher = 'namespace=~"' + "|".join(namespaces) + '"'
    # The namespace's overall quota only: the PriorityClass quota (0 pods of other tiers' classes) is scoped
    # to the pods it selects and says nothing about what the namespace may hold.
    quota = api.query(billing.kube_state("kube_resourcequota", f'{matcher},resourcequota="{QUOTA_NAME}"'), at)
    utilization = api.query(f"avg by (namespace) ({billing.gpu_exporter('DCGM_FI_DEV_GPU_UTIL', matcher)})", at)
    tokens = api.query(billing.tokens(since), at)
    per_ns = {ns: NamespaceUsage(ns) for ns in namespaces}
    for sample in quota:
        labels, value = sample["metric"], float(sample["value"][1])
        ns = per_ns.get(labels.get("namespace", ""))
        if ns is None:
            continue
        resource = labels.get("resource", "")
        # Several quotas in one namespace: the tightest hard limit binds.
        if labels.get("type") == "hard":
            ns.hard[resource] = min(ns.hard.get(resource, value), value)
        elif labels.get("type") == "used":
            ns.used[resource] = max(ns.used.get(resource, 0.0), value)
    for sample in utilization:
        ns = per_ns.get(sample["metric"].get("namespace", ""))
        if ns is not None:
            ns.gpu_utilization = float(sample["value"][1])
    counted: dict[str, dict[str, int]] = {}
    for sample in tokens:
        labels = sample["metric"]
        counted.setdefault(labels.get("tenant", ""), {})[labels.get("kind", "")] = round(float(sample["value"][1]))
    return [
        TenantUsage(
            name,
            tier,
            [per_ns[ns] for ns in spaces],
            {"prompt": 0, "completion": 0, **counted.get(name, {})},
        )
        for name, (tier, spaces) in sorted(tenants.items())
    ]


def from_quotas(
    quotas: dict[str, tuple[dict[str, float], dict[str, float]]], tenants: dict[str, tuple[str, list[str]]]
) -> list[TenantUsage]:
    """From the API server: `quotas` maps a namespace to its (used, hard)."""
    return [
        TenantUsage(
            name,
            tier,
            [NamespaceUsage(ns, *quotas.get(ns, ({}, {}))) for ns in spaces],
        )
        for name, (tier, spaces) in sorted(tenants.items())
    ]


def shares(usage: TenantUsage, config: StackConfig) -> dict[str, float | None]:
    capacity = config.platform.capacity
    totals = {"cpu": float(capacity.cpu), "memory": float(capacity.memory), "gpu": float(capacity.gpu)}
    return {name: (usage.used(resource) / totals[name] if totals[name] else None) for name, resource in SHARES.items()}


def as_json(report: list[TenantUsage], config: StackConfig, source: str, since: str) -> str:
    document = {
        "source": source,
        "tokens_window": since if any(u.tokens is not None for u in report) else None,
        "units": RESOURCES,
        "capacity": {
            "cpu": float(config.platform.capacity.cpu),
            "memory": float(config.platform.capacity.memory),
            "gpu": config.platform.capacity.gpu,
        },
        "tenants": [
            {
                "tenant": u.tenant,
                "tier": u.tier,
                "namespaces": [
                    {
                        "namespace": ns.namespace,
                        "quota": {
                            r: {"used": ns.used.get(r), "hard": ns.hard.get(r)}
                            for r in RESOURCES
                            if r in ns.used or r in ns.hard
                        },
                        "gpu_utilization_percent": ns.gpu_utilization,
                    }
                    for ns in u.namespaces
                ],
                "tokens": u.tokens,
                "share_of_cluster": shares(u, config),
            }
            for u in report
        ],
    }
    return json.dumps(document, indent=2)


def _amount(resource: str, value: float | None) -> str:
    if value is None:
        return "-"
    if RESOURCES[resource] == "bytes":
        return f"{value / 2**30:.1f}Gi"
    if RESOURCES[resource] == "cores":
        return f"{value:g}"
    return f"{value:g}"


def as_table(report: list[TenantUsage], config: StackConfig) -> str:
    short = {
        "requests.cpu": "cpu req",
        "limits.cpu": "cpu lim",
        "requests.memory": "mem req",
        "limits.memory": "mem lim",
        "requests.nvidia.com/gpu": "gpu",
        "pods": "pods",
    }
    header = f"{'tenant':<12} {'namespace':<16} " + " ".join(f"{short[r]:>15}" for r in RESOURCES) + f" {'GPU util':>8}"
    lines = ["in use / quota hard, per namespace", header, "-" * len(header)]
    for u in report:
        for ns in u.namespaces:
            cells = " ".join(
                f"{_amount(r, ns.used.get(r)) + ' / ' + _amount(r, ns.hard.get(r)):>15}" for r in RESOURCES
            )
            util = "-" if ns.gpu_utilization is None else f"{ns.gpu_utilization:.0f}%"
            lines.append(f"{u.tenant:<12} {ns.namespace:<16} {cells} {util:>8}")
    lines += [
        "",
        f"{'tenant':<12} {'cpu share':>10} {'mem share':>10} {'gpu share':>10} {'prompt tok':>12} {'compl. tok':>12}",
    ]
    for u in report:
        share = shares(u, config)
        cells = " ".join("         -" if share[k] is None else f"{share[k]:>10.1%}" for k in SHARES)
        tok = u.tokens or {}
        prompt = "-" if u.tokens is None else str(tok.get("prompt", 0))
        completion = "-" if u.tokens is None else str(tok.get("completion", 0))
        lines.append(f"{u.tenant:<12} {cells} {prompt:>12} {completion:>12}")
    return "\n".join(lines)
