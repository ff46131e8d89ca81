"""The whole stack file: every key of the `gpu-platform:` config namespace."""

from __future__ import annotations

from pydantic import field_validator, model_validator

from infra.config.base import Model, dns_label
from infra.config.consistency import StackProblems, stack_problems
from infra.config.gateway import GatewaySettings
from infra.config.monitoring import MonitoringSettings
from infra.config.platform import GpuPoolSettings, Images, PlatformSettings
from infra.config.tenants import GatewayLimits, Quota, Tenant, Tier


class StackConfig(Model):
    platform: PlatformSettings
    gpu_pool: GpuPoolSettings = GpuPoolSettings()
    images: Images = Images()
    monitoring: MonitoringSettings = MonitoringSettings()
    gateway: GatewaySettings = GatewaySettings()
    tiers: dict[str, Tier] = {}
    tenants: list[Tenant] = []

    @field_validator("tiers")
    @classmethod
    def _tier_names(cls, value: dict[str, Tier]) -> dict[str, Tier]:
        for name in value:
            dns_label(name, "tier name", 30)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        from infra.tiers import resolve_tiers

        self._check_pool()
        tiers = resolve_tiers(self.tiers)
        seen: dict[str, int] = {}
        for index, tenant in enumerate(self.tenants):
            where = f"tenants[{index}]"
            if tenant.name in seen:
                raise ValueError(
                    f"{where}.name: duplicate tenant {tenant.name!r} (first at tenants[{seen[tenant.name]}])"
                )
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
        # Names, namespaces, served models and the gateway document: see infra/config/consistency.py.
        problems = stack_problems(self)
        if problems:
            raise StackProblems(problems)
        return self

    def _check_pool(self) -> None:
        pool, mode = self.gpu_pool, self.pool_mode
        if mode in ("fake", "onprem") and not pool.nodes:
            raise ValueError(f"gpuPool.nodes: the {mode} GPU pool needs the names of the nodes to label")
        if mode == "eks" and pool.eks is None:
            raise ValueError("gpuPool.eks: the eks GPU pool needs clusterName and subnetIds")
        if mode != "eks" and pool.eks is not None:
            raise ValueError(f"gpuPool.eks: only valid with mode eks (this pool is {mode})")
        if mode == "fake" and pool.taint.key != "nvidia.com/gpu":
            raise ValueError(
                "gpuPool.taint: fake-gpu-operator's pods only tolerate the key nvidia.com/gpu; use it with the fake pool"
            )
        if mode == "onprem" and pool.gpus_per_node is None:
            raise ValueError("gpuPool.gpusPerNode: say how many physical GPUs each on-prem node has")

    @property
    def pool_mode(self) -> str:
        if self.gpu_pool.mode:
            return self.gpu_pool.mode
        return {"minikube": "fake", "kind": "fake", "onprem": "onprem", "eks": "eks"}[self.platform.flavour]

    def tier(self, name: str) -> Tier:
        from infra.tiers import resolve_tiers

        return resolve_tiers(self.tiers)[name]

    def tenant_quota(self, tenant: Tenant) -> Quota:
        return tenant.quota.merged_over(self.tier(tenant.tier).quota)

    def tenant_limits(self, tenant: Tenant) -> GatewayLimits:
        return tenant.gateway.merged_over(self.tier(tenant.tier).gateway)
