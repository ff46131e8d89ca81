"""The stack file, parsed once into typed models.

Every key of the project's config namespace (`gpu-platform:*`) maps onto a field of
`StackConfig`; unknown keys are errors so that a typo in a stack file never silently
falls back to a default. Keys of other namespaces (`kubernetes:context`, `aws:region`)
belong to providers and are passed through untouched.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from infra.quantity import parse_quantity

PROJECT = "gpu-platform"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Leaves room for "-staging" and similar suffixes inside Kubernetes' 63-character namespace limit.
MAX_TENANT_NAME = 40


def _non_negative_quantity(value: object) -> Decimal:
    amount = parse_quantity(value)  # type: ignore[arg-type]
    if amount < 0:
        raise ValueError("must be >= 0")
    return amount


Quantity = Annotated[Decimal, BeforeValidator(_non_negative_quantity), PlainSerializer(str)]
Count = Annotated[int, Field(ge=0)]


class Model(BaseModel):
    """Base for every config model: camelCase keys in YAML, no unknown keys, immutable."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


def _dns_label(value: str, what: str, max_len: int = 63) -> str:
    if not DNS_LABEL.match(value) or len(value) > max_len:
        raise ValueError(
            f"{value!r} is not a valid {what}: use lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {max_len} characters"
        )
    return value


# --- platform -------------------------------------------------------------------------------


class Capacity(Model):
    """What the cluster offers; the 30% rule and quota shares are measured against it."""

    cpu: Quantity
    memory: Quantity
    gpu: Count = Field(default=0, alias="nvidia.com/gpu")


class PlatformNamespaces(Model):
    system: str = "platform-system"
    gateway: str = "platform-gateway"
    monitoring: str = "monitoring"
    gpu_operator: str = "gpu-operator"

    @field_validator("*")
    @classmethod
    def _labels(cls, value: str) -> str:
        return _dns_label(value, "namespace name")


class PlatformSettings(Model):
    flavour: Literal["minikube", "kind", "onprem", "eks"]
    capacity: Capacity
    over_subscription_ratio: float = Field(default=1.0, ge=1.0)
    max_tenant_share: float = Field(default=0.30, gt=0.0, le=1.0)
    namespaces: PlatformNamespaces = PlatformNamespaces()
    # The Kubernetes minor version manifests are validated against in the offline preview.
    kubernetes_version: str = Field(default="1.33", pattern=r"^1\.\d+$")


class Taint(Model):
    key: str
    value: str
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]

    @classmethod
    def parse(cls, text: str) -> "Taint":
        match = re.fullmatch(r"([\w./-]+)=([\w.-]*):(\w+)", text)
        if not match:
            raise ValueError(f"{text!r} is not a taint: expected key=value:Effect, e.g. nvidia.com/gpu=true:NoSchedule")
        return cls(key=match.group(1), value=match.group(2), effect=match.group(3))

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}"


class NodeLabel(Model):
    key: str
    value: str

    @classmethod
    def parse(cls, text: str) -> "NodeLabel":
        match = re.fullmatch(r"([\w./-]+)=([\w.-]*)", text)
        if not match:
            raise ValueError(f"{text!r} is not a node label: expected key=value, e.g. platform.io/pool=gpu")
        return cls(key=match.group(1), value=match.group(2))

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class GpuPoolSettings(Model):
    """How GPU nodes are marked. Workers select `label` and tolerate `taint`; nothing else may."""

    label: Annotated[NodeLabel, BeforeValidator(lambda v: NodeLabel.parse(v) if isinstance(v, str) else v)] = (
        NodeLabel(key="platform.io/pool", value="gpu")
    )
    taint: Annotated[Taint, BeforeValidator(lambda v: Taint.parse(v) if isinstance(v, str) else v)] = Taint(
        key="nvidia.com/gpu", value="true", effect="NoSchedule"
    )


# --- tiers and tenants ------------------------------------------------------------------------


class Quota(Model):
    """Per-namespace quota. In a tier every field is set; in a tenant each field overrides its tier."""

    cpu: Quantity | None = None
    cpu_limit: Quantity | None = None
    memory: Quantity | None = None
    memory_limit: Quantity | None = None
    gpu: Count | None = None
    pods: Count | None = None
    pvcs: Count | None = None
    storage: Quantity | None = None

    def merged_over(self, base: "Quota") -> "Quota":
        # Re-validated rather than copied so that an override cannot slip a limit below its request.
        return Quota.model_validate({**base.model_dump(exclude_none=True), **self.model_dump(exclude_none=True)})

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> "Quota":
        for request, limit in (("cpu", "cpu_limit"), ("memory", "memory_limit")):
            low, high = getattr(self, request), getattr(self, limit)
            if low is not None and high is not None and high < low:
                raise ValueError(f"{to_camel(limit)} ({high}) must be >= {request} ({low})")
        return self


class GatewayLimits(Model):
    """What the gateway admits for one tenant (all replicas together)."""

    rpm: Count | None = None
    tpm: Count | None = None
    max_concurrency: Count | None = None
    max_queue: Count | None = None

    def merged_over(self, base: "GatewayLimits") -> "GatewayLimits":
        return GatewayLimits.model_validate({**base.model_dump(exclude_none=True), **self.model_dump(exclude_none=True)})


class Tier(Model):
    quota: Quota = Quota()
    gateway: GatewayLimits = GatewayLimits()
    priority: int | None = Field(default=None, ge=0, le=1_000_000_000)
    weight: int | None = Field(default=None, ge=1, le=100)
    preemption: Literal["PreemptLowerPriority", "Never"] | None = None

    def merged_over(self, base: "Tier") -> "Tier":
        return Tier(
            quota=self.quota.merged_over(base.quota),
            gateway=self.gateway.merged_over(base.gateway),
            priority=self.priority if self.priority is not None else base.priority,
            weight=self.weight if self.weight is not None else base.weight,
            preemption=self.preemption or base.preemption,
        )


class RoleMembers(Model):
    admin: list[str] = []
    user: list[str] = []
    viewer: list[str] = []


class Tenant(Model):
    name: str
    tier: str
    environments: list[str] = ["prod"]
    cost_center: str | None = None
    quota: Quota = Quota()
    users: RoleMembers = RoleMembers()
    groups: RoleMembers = RoleMembers()
    models: list[str] = []
    gateway: GatewayLimits = GatewayLimits()
    api_keys: list[str] = ["primary"]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label(value, "tenant name", MAX_TENANT_NAME)

    @field_validator("environments")
    @classmethod
    def _environments(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one environment, e.g. [prod]")
        for env in value:
            _dns_label(env, "environment name", 15)
        if len(set(value)) != len(value):
            raise ValueError(f"environments must be unique, got {value}")
        return value

    @field_validator("api_keys")
    @classmethod
    def _api_keys(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one key, e.g. [primary]")
        for key_id in value:
            _dns_label(key_id, "API key id", 20)
        if len(set(value)) != len(value):
            raise ValueError(f"API key ids must be unique, got {value}")
        return value

    def namespace(self, environment: str) -> str:
        """`prod` lives in the namespace named after the tenant; other environments get a suffix."""
        return self.name if environment == "prod" else f"{self.name}-{environment}"

    @property
    def namespaces(self) -> list[str]:
        return [self.namespace(env) for env in self.environments]

    @property
    def primary_namespace(self) -> str:
        return self.namespace("prod" if "prod" in self.environments else self.environments[0])


# --- the whole stack --------------------------------------------------------------------------


class StackConfig(Model):
    platform: PlatformSettings
    gpu_pool: GpuPoolSettings = GpuPoolSettings()
    tiers: dict[str, Tier] = {}
    tenants: list[Tenant] = []

    @field_validator("tiers")
    @classmethod
    def _tier_names(cls, value: dict[str, Tier]) -> dict[str, Tier]:
        for name in value:
            _dns_label(name, "tier name", 30)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "StackConfig":
        from infra.tiers import resolve_tiers

        tiers = resolve_tiers(self.tiers)
        seen: dict[str, int] = {}
        owners: dict[str, str] = {}
        reserved = set(self.platform.namespaces.model_dump().values()) | {"default", "kube-system", "kube-public"}
        for index, tenant in enumerate(self.tenants):
            where = f"tenants[{index}]"
            if tenant.name in seen:
                raise ValueError(f"{where}.name: duplicate tenant {tenant.name!r} (first at tenants[{seen[tenant.name]}])")
            seen[tenant.name] = index
            if tenant.tier not in tiers:
                raise ValueError(
                    f"{where}.tier: unknown tier {tenant.tier!r} for tenant {tenant.name!r}; "
                    f"known tiers: {', '.join(sorted(tiers))} (define new ones under `tiers`)"
                )
            try:
                tenant.quota.merged_over(tiers[tenant.tier].quota)
            except ValueError as exc:
                problem = exc.errors()[0]["msg"].removeprefix("Value error, ") if hasattr(exc, "errors") else str(exc)
                raise ValueError(f"{where}.quota: {problem} (tenant {tenant.name!r}, tier {tenant.tier!r})") from None
            for namespace in tenant.namespaces:
                if namespace in reserved:
                    raise ValueError(f"{where}: namespace {namespace!r} is reserved for the platform")
                if namespace in owners:
                    raise ValueError(
                        f"{where}: namespace {namespace!r} of tenant {tenant.name!r} collides with "
                        f"tenant {owners[namespace]!r}; rename one of them"
                    )
                owners[namespace] = tenant.name
        return self

    def tier(self, name: str) -> Tier:
        from infra.tiers import resolve_tiers

        return resolve_tiers(self.tiers)[name]

    def tenant_quota(self, tenant: Tenant) -> Quota:
        return tenant.quota.merged_over(self.tier(tenant.tier).quota)

    def tenant_limits(self, tenant: Tenant) -> GatewayLimits:
        return tenant.gateway.merged_over(self.tier(tenant.tier).gateway)
