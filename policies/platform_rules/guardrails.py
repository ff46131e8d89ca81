"""Tenant guardrails: every tenant namespace is fenced by quota, limits and default-deny, and exposes nothing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from .model import PolicyConfig, Resource, tenant_namespaces


def _is_default_deny(policy: Resource) -> bool:
    spec = policy.props.get("spec") or {}
    return (
        not (spec.get("podSelector") or {})
        and set(spec.get("policyTypes") or []) == {"Ingress", "Egress"}
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def tenant_guardrails(resources: list[Resource], config: PolicyConfig) -> Iterator[tuple[str, str]]:
    by_namespace: dict[str, list[Resource]] = defaultdict(list)
    for resource in resources:
        by_namespace[resource.namespace or ""].append(resource)
    for namespace, tenant in sorted(tenant_namespaces(resources).items()):
        inside = by_namespace[namespace]
        quotas = [r for r in inside if r.kind == "ResourceQuota"]
        where = f"Namespace {namespace}"
        if not any("requests.nvidia.com/gpu" in ((q.props.get("spec") or {}).get("hard") or {}) for q in quotas):
            yield (
                where,
                f"namespace {namespace!r} of tenant {tenant!r} has no ResourceQuota covering requests.nvidia.com/gpu",
            )
        if not any(r.kind == "LimitRange" for r in inside):
            yield where, f"namespace {namespace!r} of tenant {tenant!r} has no LimitRange"
        if not any(r.kind == "NetworkPolicy" and _is_default_deny(r) for r in inside):
            yield (
                where,
                f"namespace {namespace!r} of tenant {tenant!r} has no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules)",
            )
        for service in (r for r in inside if r.kind == "Service"):
            kind = (service.props.get("spec") or {}).get("type", "ClusterIP")
            if kind in ("LoadBalancer", "NodePort"):
                yield (
                    service.display,
                    f"{service.display} of tenant {tenant!r} is of type {kind}; tenants reach the outside only through the gateway",
                )
