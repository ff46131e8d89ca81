"""The stack file, parsed once into typed models.

Every key of the project's config namespace (`gpu-platform:*`) maps onto a field of
`StackConfig`; unknown keys are errors so that a typo in a stack file never silently
falls back to a default. Keys of other namespaces (`kubernetes:context`, `aws:region`)
belong to providers and are passed through untouched.
"""

from infra.config.base import DNS_LABEL, MAX_TENANT_NAME, PROJECT, Count, Model, Quantity, dns_label
from infra.config.gateway import GatewayApi, GatewayStackSettings, ParentGateway, RedisSettings
from infra.config.monitoring import MonitoringSettings, Pricing, Resources, Thresholds
from infra.config.platform import (
    Capacity,
    EksNodeGroup,
    FakeGpus,
    GpuPoolSettings,
    Images,
    NodeLabel,
    PlatformNamespaces,
    PlatformSettings,
    Taint,
    TimeSlicing,
)
from infra.config.stack import StackConfig
from infra.config.tenants import GatewayLimits, Quota, RoleMembers, Tenant, Tier
from infra.config.workers import Autoscaling, ModelCache, Route, Worker

__all__ = [
    "DNS_LABEL",
    "MAX_TENANT_NAME",
    "PROJECT",
    "Count",
    "Model",
    "Quantity",
    "dns_label",
    "Capacity",
    "EksNodeGroup",
    "FakeGpus",
    "Images",
    "TimeSlicing",
    "Autoscaling",
    "ModelCache",
    "Route",
    "Worker",
    "GpuPoolSettings",
    "NodeLabel",
    "PlatformNamespaces",
    "PlatformSettings",
    "Taint",
    "GatewayApi",
    "GatewayStackSettings",
    "ParentGateway",
    "RedisSettings",
    "MonitoringSettings",
    "Pricing",
    "Resources",
    "Thresholds",
    "StackConfig",
    "GatewayLimits",
    "Quota",
    "RoleMembers",
    "Tenant",
    "Tier",
]
