"""The gateway's configuration document, built from the stack: one place for GatewayStack and `make demo`.

Per tenant: tier weight, SHA-256 hashes of its API keys (never the keys), the models it may call,
its limits, its own upstreams (its workers) and a route per model. Routing is per tenant, so two
tenants serving a model of the same name never reach each other's workers.
"""

from __future__ import annotations

from typing import Any

from infra.config import StackConfig, Tenant


def tenant_routes(tenant: Tenant) -> dict[str, dict[str, Any]]:
    """Declared routes, and for every other served model a direct (one worker) or even weighted route."""
    routes = {
        model: route.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True) | {"strategy": route.strategy}
        for model, route in tenant.routes.items()
    }
    serving: dict[str, list[str]] = {}
    for worker in tenant.workers:
        serving.setdefault(worker.served_name, []).append(worker.name)
    for model, workers in serving.items():
        if model in routes:
            continue
        if len(workers) == 1:
            routes[model] = {"strategy": "direct", "primary": workers[0]}
        else:
            routes[model] = {"strategy": "weighted", "weights": {name: 1.0 for name in workers}}
    return routes


def gateway_document(
    config: StackConfig,
    key_hashes: dict[str, dict[str, str]],
    upstreams: dict[str, dict[str, str]],
) -> dict[str, Any]:
    """`key_hashes[tenant][key id]` and `upstreams[tenant][worker]` come from TenantStack/InferenceWorker outputs."""
    tenants = {}
    for tenant in config.tenants:
        tier = config.tier(tenant.tier)
        limits = config.tenant_limits(tenant)
        tenants[tenant.name] = {
            "tier": tenant.tier,
            "weight": tier.weight,
            "keyHashes": sorted(key_hashes.get(tenant.name, {}).values()),
            "models": tenant.allowed_models,
            "limits": limits.model_dump(by_alias=True, exclude_none=True),
            "upstreams": dict(sorted(upstreams.get(tenant.name, {}).items())),
            "routes": tenant_routes(tenant),
        }
    return {"tenants": tenants}
