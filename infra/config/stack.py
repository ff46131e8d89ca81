"""The whole stack file: every key of the `gpu-platform:` config namespace."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, field_validator, model_validator

from infra.config.base import Model, dns_label
from infra.config.consistency import StackProblems, stack_problems
from infra.config.gateway import GatewayStackSettings
from infra.config.monitoring import MonitoringSettings
from infra.config.platform import GpuPoolSettings, Images, PlatformSettings
from infra.config.pool_modes import POOL_MODES, default_mode
from infra.config.tenants import GatewayLimits, Quota, Tenant, Tier
from infra.config.tiers import resolve_tiers


def _secret_value(value: object) -> object:
    """A secret config value: the plaintext under `pulumi up`, `{secure: …}` ciphertext in a stack file."""
    if isinstance(value, dict) and set(value) == {"secure"} and isinstance(value["secure"], str):
        return "<encrypted>"
    return value


class StackConfig(Model):
    platform: PlatformSettings
    gpu_pool: GpuPoolSettings = GpuPoolSettings()
    images: Images = Images()
    monitoring: MonitoringSettings = MonitoringSettings()
    gateway: GatewayStackSettings = GatewayStackSettings()
    tiers: dict[str, Tier] = {}
    tenants: list[Tenant] = []
    # Set with `pulumi config set --secret huggingFaceToken hf_…`: the program reads it as a Pulumi secret and
    # creates the Secret each worker's `hfTokenSecret` names, so gated models download on the first update.
    hugging_face_token: Annotated[str, BeforeValidator(_secret_value)] | None = None

    @field_validator("tiers")
    @classmethod
    def _tier_names(cls, value: dict[str, Tier]) -> dict[str, Tier]:
        for name in value:
            dns_label(name, "tier name", 30)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
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
            for w, worker in enumerate(tenant.workers):
                if worker.hf_token_secret and self.hugging_face_token is None:
                    raise ValueError(
                        f"{where}.workers[{w}].hfTokenSecret: the platform creates this Secret in namespace "
                        f"{tenant.namespace(worker.environment)!r} from the stack's token; set it with "
                        "`pulumi config set --secret huggingFaceToken <token>`"
                    )
        # Names, namespaces, served models and the gateway document: see infra/config/consistency.py.
        problems = stack_problems(self)
        if problems:
            raise StackProblems(problems)
        return self

    def _check_pool(self) -> None:
        pool, mode = self.gpu_pool, self.pool_mode
        POOL_MODES[mode].validate(pool)
        provided = self.pool_gpus
        if provided is not None and self.platform.capacity.gpu > provided:
            raise ValueError(
                f"platform.capacity.nvidia.com/gpu: {self.platform.capacity.gpu} GPUs declared, but the {mode} pool "
                f"provides {provided}; tenant shares are measured against what the pool really has, so declare "
                f"at most {provided} (or grow the pool)"
            )
        if POOL_MODES[mode].labels_nodes and pool.taint_nodes:
            # The taint keeps every pod without the toleration off the pool: the gateway, Redis and the
            # monitoring stack need at least one node outside it, or they stay Pending forever.
            others = [node for node in self.platform.nodes if node not in pool.nodes]
            if not others:
                listed = (
                    f"platform.nodes lists {self.platform.nodes}" if self.platform.nodes else "platform.nodes is empty"
                )
                raise ValueError(
                    f"gpuPool.taintNodes: tainting {pool.nodes} would leave no node for the platform's own pods "
                    f"({listed}); name the cluster's other nodes under platform.nodes, or set gpuPool.taintNodes: "
                    "false when the GPU nodes are the whole cluster"
                )

    @property
    def pool_gpus(self) -> int | None:
        """What the GPU pool really provides at its largest; None where only the cloud can say."""
        return POOL_MODES[self.pool_mode].gpus(self.gpu_pool)

    @property
    def pool_mode(self) -> str:
        return self.gpu_pool.mode or default_mode(self.platform.flavour)

    def tier(self, name: str) -> Tier:
        return resolve_tiers(self.tiers)[name]

    def tenant_quota(self, tenant: Tenant) -> Quota:
        return tenant.quota.merged_over(self.tier(tenant.tier).quota)

    def tenant_limits(self, tenant: Tenant) -> GatewayLimits:
        return tenant.gateway.merged_over(self.tier(tenant.tier).gateway)
