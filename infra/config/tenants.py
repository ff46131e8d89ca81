"""Tiers and tenants."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from infra.config.base import (
    MAX_TENANT_NAME,
    ApiKeyId,
    Count,
    EnvironmentName,
    LabelValue,
    Model,
    ModelName,
    Quantity,
    RbacSubject,
    TenantName,
    dns_label,
)
from infra.config.workers import Route, Worker


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

    def merged_over(self, base: Quota) -> Quota:
        # Re-validated rather than copied so that an override cannot slip a limit below its request.
        return Quota.model_validate({**base.model_dump(exclude_none=True), **self.model_dump(exclude_none=True)})

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> Quota:
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

    def merged_over(self, base: GatewayLimits) -> GatewayLimits:
        return GatewayLimits.model_validate(
            {**base.model_dump(exclude_none=True), **self.model_dump(exclude_none=True)}
        )


class Tier(Model):
    quota: Quota = Quota()
    gateway: GatewayLimits = GatewayLimits()
    # Below the platform-critical class (1e9), which the platform's own pods use.
    priority: int | None = Field(default=None, ge=0, le=999_999_999)
    weight: int | None = Field(default=None, ge=1, le=100)
    preemption: Literal["PreemptLowerPriority", "Never"] | None = None

    def merged_over(self, base: Tier) -> Tier:
        return Tier(
            quota=self.quota.merged_over(base.quota),
            gateway=self.gateway.merged_over(base.gateway),
            priority=self.priority if self.priority is not None else base.priority,
            weight=self.weight if self.weight is not None else base.weight,
            preemption=self.preemption or base.preemption,
        )


class RoleMembers(Model):
    admin: list[RbacSubject] = []
    user: list[RbacSubject] = []
    viewer: list[RbacSubject] = []


class Tenant(Model):
    name: TenantName
    tier: str
    environments: list[EnvironmentName] = ["prod"]
    cost_center: LabelValue | None = None
    quota: Quota = Quota()
    users: RoleMembers = RoleMembers()
    groups: RoleMembers = RoleMembers()
    models: list[ModelName] = []
    gateway: GatewayLimits = GatewayLimits()
    api_keys: list[ApiKeyId] = ["primary"]
    workers: list[Worker] = []
    # Keyed by the `model` string clients send; the gateway's own Route model (services/gateway/config.py).
    routes: dict[ModelName, Route] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return dns_label(value, "tenant name", MAX_TENANT_NAME)

    @field_validator("environments")
    @classmethod
    def _environments(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one environment, e.g. [prod]")
        for env in value:
            dns_label(env, "environment name", 15)
        if len(set(value)) != len(value):
            raise ValueError(f"environments must be unique, got {value}")
        return value

    @field_validator("api_keys")
    @classmethod
    def _api_keys(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one key, e.g. [primary]")
        for key_id in value:
            dns_label(key_id, "API key id", 20)
        if len(set(value)) != len(value):
            raise ValueError(f"API key ids must be unique, got {value}")
        return value

    @model_validator(mode="after")
    def _workers_and_routes(self) -> Tenant:
        names = [worker.name for worker in self.workers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"workers: duplicate worker names {duplicates} in tenant {self.name!r}")
        by_name = {worker.name: worker for worker in self.workers}
        for index, worker in enumerate(self.workers):
            if worker.environment not in self.environments:
                raise ValueError(
                    f"workers[{index}].environment: {worker.environment!r} is not one of tenant {self.name!r}'s "
                    f"environments {self.environments}"
                )
        for model, route in self.routes.items():
            for worker_name in route.upstream_names:
                if worker_name not in by_name:
                    raise ValueError(
                        f"routes.{model}: unknown worker {worker_name!r} (tenant {self.name!r} has {names})"
                    )
                if by_name[worker_name].served_name != model:
                    raise ValueError(
                        f"routes.{model}: worker {worker_name!r} serves {by_name[worker_name].served_name!r}, not {model!r}"
                    )
        return self

    @property
    def allowed_models(self) -> list[str]:
        """Models the gateway lets this tenant call: the declared ones and every worker's."""
        return sorted(set(self.models) | {worker.served_name for worker in self.workers})

    def namespace(self, environment: str) -> str:
        """`prod` lives in the namespace named after the tenant; other environments get a suffix."""
        return self.name if environment == "prod" else f"{self.name}-{environment}"

    @property
    def namespaces(self) -> list[str]:
        return [self.namespace(env) for env in self.environments]

    @property
    def primary_namespace(self) -> str:
        return self.namespace("prod" if "prod" in self.environments else self.environments[0])
