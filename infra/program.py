"""Composition: the stack's configuration turned into components.

`main()` is what `pulumi up` runs (through infra/__main__.py) and what the offline preview
runs under Pulumi's mock runtime; both read the configuration from the Pulumi runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.platform_core import PlatformCore, PlatformCoreArgs
from components.tenant import TenantStack, TenantStackArgs
from infra.config import StackConfig
from infra.stack_file import ConfigError, parse_stack_config, pulumi_config_values, stack_file_path, display_path


@dataclass
class Platform:
    config: StackConfig
    core: PlatformCore
    tenants: dict[str, TenantStack] = field(default_factory=dict)


def build_platform(config: StackConfig) -> Platform:
    used_tiers = {tenant.tier: config.tier(tenant.tier) for tenant in config.tenants}
    core = PlatformCore("platform", PlatformCoreArgs(platform=config.platform, gpu_pool=config.gpu_pool, tiers=used_tiers))
    platform = Platform(config=config, core=core)
    for tenant in config.tenants:
        platform.tenants[tenant.name] = TenantStack(
            tenant.name,
            TenantStackArgs(
                tenant=tenant,
                tier_name=tenant.tier,
                quota=config.tenant_quota(tenant),
                priority_class_name=core.priority_classes[tenant.tier],
                platform_namespaces=config.platform.namespaces,
                role_names=core.role_names,
            ),
        )
    return platform


def export(platform: Platform) -> None:
    pulumi.export(
        "tenants",
        {
            name: {"tier": stack.tenant.tier, "namespaces": stack.namespaces, "apiKeyHashes": stack.api_key_hashes}
            for name, stack in platform.tenants.items()
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
