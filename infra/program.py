"""Composition: the stack's configuration turned into components.

`main()` is what `pulumi up` runs (through infra/__main__.py) and what the offline preview
runs under Pulumi's mock runtime; both read the configuration from the Pulumi runtime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pulumi

from components import metrics_catalog
from components.gateway import GatewayStack, GatewayStackArgs
from components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from components.inference_worker import InferenceWorker, InferenceWorkerArgs
from components.monitoring import MonitoringStack, MonitoringStackArgs
from components.monitoring_rules import rule_groups
from components.platform_core import PLATFORM_CRITICAL, PlatformCore, PlatformCoreArgs
from components.tenant import TenantStack, TenantStackArgs
from infra.config import PROJECT, StackConfig
from infra.gateway_document import gateway_document
from infra.stack_file import ConfigError, display_path, parse_stack_config, pulumi_config_values, stack_file_path

# Kubernetes' own classes, which tenant pods may never use.
SYSTEM_PRIORITY_CLASSES = {"system-cluster-critical", "system-node-critical"}


@dataclass
class Platform:
    config: StackConfig
    core: PlatformCore
    pool: GpuNodePool
    tenants: dict[str, TenantStack] = field(default_factory=dict)
    workers: dict[str, dict[str, InferenceWorker]] = field(default_factory=dict)
    monitoring: MonitoringStack | None = None
    gateway: GatewayStack | None = None


def build_platform(config: StackConfig) -> Platform:
    used_tiers = {tenant.tier: config.tier(tenant.tier) for tenant in config.tenants}
    pool = GpuNodePool(
        "gpu-pool", GpuNodePoolArgs(mode=config.pool_mode, pool=config.gpu_pool, namespaces=config.platform.namespaces)
    )
    core = PlatformCore(
        "platform",
        PlatformCoreArgs(
            platform=config.platform, gpu_pool=config.gpu_pool, tiers=used_tiers, gpu_capacity=pool.gpu_capacity
        ),
    )
    platform = Platform(config=config, core=core, pool=pool)
    # Monitoring first: its release installs the CRDs every ServiceMonitor below depends on.
    if config.monitoring.enabled:
        platform.monitoring = build_monitoring(config, pool, core)
    crds = platform.monitoring.crds if platform.monitoring else None
    hf_token = pulumi.Config(PROJECT).get_secret("huggingFaceToken") if config.hugging_face_token else None
    all_classes = set(core.priority_class_resources) | SYSTEM_PRIORITY_CLASSES
    for tenant in config.tenants:
        own_class = core.priority_classes[tenant.tier]
        hf_secrets: dict[str, set[str]] = {}
        for worker in tenant.workers:
            if worker.hf_token_secret:
                hf_secrets.setdefault(tenant.namespace(worker.environment), set()).add(worker.hf_token_secret)
        stack = platform.tenants[tenant.name] = TenantStack(
            tenant.name,
            TenantStackArgs(
                tenant=tenant,
                tier_name=tenant.tier,
                quota=config.tenant_quota(tenant),
                priority_class_name=own_class,
                platform_namespaces=config.platform.namespaces,
                role_names=core.role_names,
                forbidden_priority_classes=tuple(sorted(all_classes - {own_class})),
                hf_token=hf_token,
                hf_token_secrets={ns: tuple(sorted(names)) for ns, names in hf_secrets.items()},
            ),
        )
        platform.workers[tenant.name] = {}
        for worker in tenant.workers:
            namespace = tenant.namespace(worker.environment)
            needs = [core.priority_class_resources[own_class]]
            if worker.gpus:
                needs += pool.ready
            if worker.hf_token_secret:
                needs.append(stack.hf_secrets[(namespace, worker.hf_token_secret)])
            platform.workers[tenant.name][worker.name] = InferenceWorker(
                f"{tenant.name}-{worker.name}",
                InferenceWorkerArgs(
                    tenant=tenant.name,
                    tier=tenant.tier,
                    namespace=namespace,
                    worker=worker,
                    images=config.images,
                    node_selector=pool.node_selector,
                    toleration=pool.toleration,
                    priority_class_name=own_class,
                    depends_on=needs,
                    tenancy=[stack],
                    monitoring_crds=crds,
                    storage_class=config.platform.storage_class,
                ),
            )
    if config.gateway.enabled:
        platform.gateway = build_gateway(platform)
    return platform


def build_gateway(platform: Platform) -> GatewayStack:
    config = platform.config
    hashes = pulumi.Output.all(**{name: stack.api_key_hashes for name, stack in platform.tenants.items()})
    upstreams = {
        tenant: {name: worker.upstream_url for name, worker in workers.items()}
        for tenant, workers in platform.workers.items()
    }
    return GatewayStack(
        "gateway",
        GatewayStackArgs(
            settings=config.gateway,
            images=config.images,
            namespaces=config.platform.namespaces,
            document=hashes.apply(lambda known: gateway_document(config, known, upstreams)),
            monitoring_crds=platform.monitoring.crds if platform.monitoring else None,
            priority_class_name=PLATFORM_CRITICAL,
            depends_on=[platform.core.priority_class_resources[PLATFORM_CRITICAL]],
            storage_class=config.platform.storage_class,
        ),
    )


def load_dashboards() -> dict[str, dict]:
    folder = Path(__file__).resolve().parent.parent / "components" / "dashboards"
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def build_monitoring(config: StackConfig, pool: GpuNodePool, core: PlatformCore) -> MonitoringStack:
    tenant_of = {namespace: tenant.name for tenant in config.tenants for namespace in tenant.namespaces}
    return MonitoringStack(
        "monitoring",
        MonitoringStackArgs(
            settings=config.monitoring,
            namespaces=config.platform.namespaces,
            pool_mode=config.pool_mode,
            node_selector=pool.node_selector,
            toleration=pool.toleration,
            rule_groups=rule_groups(
                tenant_of,
                {tenant.name: tenant.tier for tenant in config.tenants},
                config.monitoring.thresholds,
                config.monitoring.pricing,
                config.platform.namespaces.gateway,
                # The namespace label `cost-center` defaults to the tenant name; billing says the same.
                {tenant.name: tenant.cost_center or tenant.name for tenant in config.tenants},
            ),
            adapter_rules=metrics_catalog.adapter_rules(),
            dashboards=load_dashboards(),
            priority_class_name=PLATFORM_CRITICAL,
            gpu_operator_namespace=pool.operator_namespace,
            storage_class=config.platform.storage_class,
        ),
        opts=pulumi.ResourceOptions(depends_on=[core.priority_class_resources[PLATFORM_CRITICAL]]),
    )


def export(platform: Platform) -> None:
    pulumi.export(
        "tenants",
        {
            name: {"tier": stack.tenant.tier, "namespaces": stack.namespaces, "apiKeyHashes": stack.api_key_hashes}
            for name, stack in platform.tenants.items()
        },
    )
    pulumi.export(
        "gpuPool",
        {
            "nodeSelector": platform.pool.node_selector,
            "toleration": platform.pool.toleration,
            "gpuCapacity": platform.pool.gpu_capacity,
        },
    )
    pulumi.export(
        "workers",
        {
            tenant: {
                name: {"upstream": worker.upstream_url, "model": worker.served_model_name, "engine": worker.engine}
                for name, worker in workers.items()
            }
            for tenant, workers in platform.workers.items()
        },
    )
    # Canary pairs and other routes, per tenant and model, as the gateway's Route reads them.
    pulumi.export(
        "routes",
        {
            t.name: {
                model: route.model_dump(exclude_none=True, exclude_defaults=True, by_alias=True)
                | {"strategy": route.strategy}
                for model, route in t.routes.items()
            }
            for t in platform.config.tenants
        },
    )
    pulumi.export("apiKeys", pulumi.Output.secret({name: stack.api_keys for name, stack in platform.tenants.items()}))


def config_from_runtime() -> StackConfig:
    """The stack's configuration as the Pulumi runtime received it (`pulumi up` or the preview)."""
    from pulumi.runtime.config import CONFIG, get_config_env

    raw = {**get_config_env(), **CONFIG.get()}
    return parse_stack_config(pulumi_config_values(raw), display_path(stack_file_path(pulumi.get_stack())))


def main() -> Platform:
    try:
        config = config_from_runtime()
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    platform = build_platform(config)
    export(platform)
    return platform
