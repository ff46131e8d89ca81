"""Monitoring: retention, sizes, alert thresholds and the chargeback price table."""

from __future__ import annotations

from pydantic import Field, field_validator

from infra.config.base import Model, NonNegativeFloat, Quantity, StorageClassName

# `platformctl chargeback` bills at most a calendar month; Prometheus must keep at least that.
LONGEST_BILLING_WINDOW_DAYS = 31
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 365 * 86400}


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


class PrometheusStorage(Model):
    """Prometheus' volume: without one a restart loses the month being billed."""

    size: Quantity = Field(default="50Gi")
    storage_class: StorageClassName | None = None


class MonitoringSettings(Model):
    enabled: bool = True
    # A month of billing plus two weeks to run the invoice for the month before.
    retention: str = Field(default="45d", pattern=r"^\d+(ms|s|m|h|d|w|y)$")
    storage: PrometheusStorage = PrometheusStorage()
    scrape_interval: str = Field(default="15s", pattern=r"^\d+(ms|s|m|h)$")
    prometheus: Resources = Resources(cpu="500m", memory="2Gi", memory_limit="4Gi")
    # Scrape etcd, the scheduler, the controller manager and kube-proxy: only where the cluster exposes them
    # beyond 127.0.0.1 (kind, minikube and kubeadm do not; EKS hides them).
    control_plane_scrapes: bool = False
    thresholds: Thresholds = Thresholds()
    pricing: Pricing = Pricing()

    @field_validator("retention")
    @classmethod
    def _covers_billing(cls, value: str) -> str:
        number, unit = int(value.rstrip("mshdwy")), value.lstrip("0123456789")
        if number * _SECONDS[unit] < LONGEST_BILLING_WINDOW_DAYS * 86400:
            raise ValueError(
                f"{value} is shorter than the longest billing window ({LONGEST_BILLING_WINDOW_DAYS}d, "
                "platformctl chargeback --month): use at least 31d"
            )
        return value
