"""Tenant guardrails: every tenant namespace is fenced by quota, limits and default-deny, and exposes nothing."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from .config import PolicyConfig
from .model import Resource, scoped
from .rule import rule

# What a tenant quota must bound: without a key, the tenant's share of it is unlimited.
QUOTA_KEYS = ("requests.cpu", "limits.cpu", "requests.memory", "limits.memory", "requests.nvidia.com/gpu", "pods")
# Pod and Service addresses live in the private ranges: an ipBlock reaching them reaches other tenants.
PRIVATE_V4 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
PRIVATE_V6 = [ipaddress.ip_network("fc00::/7")]


def _is_default_deny(policy: Resource) -> bool:
    spec = policy.props.get("spec") or {}
    return (
        not (spec.get("podSelector") or {})
        and set(spec.get("policyTypes") or []) == {"Ingress", "Egress"}
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def _private_gap(block: dict[str, Any]) -> str | None:
    """The private range an ipBlock reaches without excepting it, or None."""
    try:
        cidr = ipaddress.ip_network(str(block.get("cidr")), strict=False)
        excepted = [ipaddress.ip_network(str(e), strict=False) for e in block.get("except") or []]
    except ValueError:
        return f"unreadable ipBlock {block!r}"
    for private in PRIVATE_V4 if cidr.version == 4 else PRIVATE_V6:
        if not cidr.overlaps(private):
            continue
        reached = private if cidr.supernet_of(private) else cidr
        if not any(e.version == reached.version and e.supernet_of(reached) for e in excepted):
            return str(reached)
    return None


def _open_peers(rules: list[Any], peers_key: str) -> Iterator[str]:
    """Why a rule list lets traffic from/to anywhere: no peers at all, every namespace, or a private range."""
    for index, item in enumerate(rules, start=1):
        peers = item.get(peers_key) if isinstance(item, dict) else None
        if not peers:
            yield f"rule {index} has no `{peers_key}`, so it matches every peer"
            continue
        for peer in peers:
            if not isinstance(peer, dict):
                continue
            if "namespaceSelector" in peer and not (peer.get("namespaceSelector") or {}):
                yield f"rule {index} selects every namespace (empty namespaceSelector)"
            block = peer.get("ipBlock")
            if isinstance(block, dict):
                gap = _private_gap(block)
                if gap:
                    yield (
                        f"rule {index}'s ipBlock {block.get('cidr')} reaches the cluster's private range {gap} "
                        "(except 10.0.0.0/8, 172.16.0.0/12 and 192.168.0.0/16)"
                    )


def network_policy_openings(policy: Resource) -> Iterator[str]:
    spec = policy.props.get("spec") or {}
    for reason in _open_peers(spec.get("ingress") or [], "from"):
        yield f"allows ingress from anywhere: {reason}"
    for reason in _open_peers(spec.get("egress") or [], "to"):
        yield f"allows egress to anywhere: {reason}"


@rule(
    name="tenant-guardrails",
    description=(
        "Every tenant namespace has a ResourceQuota covering cpu, memory, GPUs and pods, a LimitRange and a "
        "default-deny NetworkPolicy; no NetworkPolicy opens it to every peer or to 0.0.0.0/0 without the private "
        "ranges; no LoadBalancer or NodePort Service."
    ),
    level="mandatory",
    severity="critical",
)
def tenant_guardrails(resources: list[Resource], config: PolicyConfig) -> Iterator[tuple[str, str]]:
    by_namespace: dict[str, list[Resource]] = defaultdict(list)
    for resource in resources:
        by_namespace[resource.namespace or ""].append(resource)
    for namespace, tenant in sorted(config.tenants.items()):
        inside = by_namespace[namespace]
        where = f"Namespace {namespace}"
        covered = {
            key
            for q in inside
            if q.kind == "ResourceQuota" and not scoped(q)
            for key in ((q.props.get("spec") or {}).get("hard") or {})
        }
        missing = [key for key in QUOTA_KEYS if key not in covered]
        if missing:
            yield (
                where,
                f"namespace {namespace!r} of tenant {tenant!r} has no ResourceQuota covering {', '.join(missing)}",
            )
        if not any(r.kind == "LimitRange" for r in inside):
            yield where, f"namespace {namespace!r} of tenant {tenant!r} has no LimitRange"
        if not any(r.kind == "NetworkPolicy" and _is_default_deny(r) for r in inside):
            yield (
                where,
                f"namespace {namespace!r} of tenant {tenant!r} has no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules)",
            )
        for policy in (r for r in inside if r.kind == "NetworkPolicy"):
            for opening in network_policy_openings(policy):
                yield policy.display, f"{policy.display} of tenant {tenant!r} {opening}"
        for service in (r for r in inside if r.kind == "Service"):
            kind = (service.props.get("spec") or {}).get("type", "ClusterIP")
            if kind in ("LoadBalancer", "NodePort"):
                yield (
                    service.display,
                    f"{service.display} of tenant {tenant!r} is of type {kind}; tenants reach the outside only through the gateway",
                )
