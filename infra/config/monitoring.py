"""Monitoring: retention, sizes, alert thresholds and the chargeback price table."""

from __future__ import annotations

from pydantic import Field

from infra.config.base import Model, NonNegativeFloat, Quantity


class Resources(Model):
    cpu: Quantity
    memory: Quantity
    cpu_limit: Quantity | None = None
    memory_limit: Quantity | None = None

    def as_kubernetes(self) -> dict[str, dict[str, str]]:
        from infra.quantity import format_bytes, format_cpu

        return {
            "requests": {"cpu": format_cpu(self.cpu), "memory": format_bytes(self.memory)},
            "limits": {
                "cpu": format_cpu(self.cpu_limit if self.cpu_limit is not None else self.cpu * 2),
                "memory": format_bytes(self.memory_limit if self.memory_limit is not None else self.memory),
            },
        }


class Pricing(Model):
    """What a GPU-hour and a million tokens cost; per-tier multipliers for premium tiers."""

    currency: str = "USD"
    gpu_hour: float = Field(default=2.50, ge=0)
    per_million_prompt_tokens: float = Field(default=0.20, ge=0)
    per_million_completion_tokens: float = Field(default=0.60, ge=0)
    tier_multipliers: dict[str, NonNegativeFloat] = {}


class Thresholds(Model):
    """Alert thresholds."""

    quota_used_ratio: float = Field(default=0.90, gt=0, le=1)
    queue_depth: float = Field(default=10, gt=0)
    rate_limited_ratio: float = Field(default=0.05, gt=0, le=1)
    gpu_idle_utilization: float = Field(default=5, ge=0, le=100)
    gpu_idle_minutes: int = Field(default=30, ge=5)


class MonitoringSettings(Model):
    enabled: bool = True
    retention: str = Field(default="15d", pattern=r"^\d+(ms|s|m|h|d|w|y)$")
    scrape_interval: str = Field(default="15s", pattern=r"^\d+(ms|s|m|h)$")
    prometheus: Resources = Resources(cpu="500m", memory="2Gi", memory_limit="4Gi")
    thresholds: Thresholds = Thresholds()
    pricing: Pricing = Pricing()
