"""What the platform bills, defined once: the per-minute usage samples and their integrals.

Two recording rules, evaluated every minute, turn the platform's own series into billing samples:

- `tenant_namespace:billed_gpus:sum`: the `nvidia.com/gpu` units requested by scheduled pods
  (kube-state-metrics), per tenant and namespace, at that minute. Each sample stands for one
  minute, so GPU-hours over a window are `sum_over_time(...) / 60`: a GPU held 10 of 60 minutes
  gives 10 samples of 1, 1/6 GPU-hour; a tenant created or deleted mid-window has samples only
  while its pods held GPUs.
- `tenant:billed_tokens:increase1m`: the gateway's token counters' increase since the previous
  minute, per tenant and kind. Summed over a window it telescopes to the exact difference of the
  counters, without the extrapolation of `increase()`.

Gaps: a minute in which Prometheus did not run or could not scrape kube-state-metrics has no GPU
sample and is not billed (the platform, not the tenant, pays for its monitoring outages). The
gateway keeps counting while Prometheus is down, so tokens served during a gap are billed in the
first minute after it (the previous value is looked up as far back as `COUNTER_MEMORY`). One
approximation remains: a Prometheus restart writes no staleness markers, so for a restart shorter
than the lookback delta (5 minutes) a pod deleted meanwhile stays visible, and billed, until that
delta has passed since its last sample.

The CLI (`platformctl chargeback`), the chargeback recording rules and the tenant dashboard's cost
panel all render their PromQL from the functions here, and prices per tenant come from `prices`.

Only the platform's own jobs count: selectors pin `job` (and the gateway's namespace), and the
Prometheus of MonitoringStack forces the `namespace` label of every tenant-owned monitor to the
tenant's namespace, so a tenant's ServiceMonitor can neither add usage to another tenant nor, with
the `max` de-duplication below, hide its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infra.config import Pricing

KUBE_STATE_METRICS_JOB = "kube-state-metrics"
GATEWAY_JOB = "gateway"
# dcgm-exporter's chart names its Service `dcgm-exporter`; fake-gpu-operator's is `nvidia-dcgm-exporter`.
GPU_EXPORTER_JOBS = ("dcgm-exporter", "nvidia-dcgm-exporter")

BILLING_INTERVAL = "1m"
SAMPLE_SECONDS = 60
# How far back a token counter's previous value is looked up: covers Prometheus outages up to a day.
COUNTER_MEMORY = "1d"

BILLED_GPUS = "tenant_namespace:billed_gpus:sum"
BILLED_TOKENS = "tenant:billed_tokens:increase1m"
TENANT_BILLING_INFO = "platform:tenant_billing:info"
GPU_HOUR_PRICE = "platform:tenant_gpu_hour_price:value"
TOKEN_PRICE = "platform:tenant_token_price:value"
TENANT_JOIN = "* on(namespace) group_left(tenant) platform:namespace_tenant:info"


def kube_state(metric: str, matchers: str = "") -> str:
    return f'{metric}{{job="{KUBE_STATE_METRICS_JOB}"{", " + matchers if matchers else ""}}}'


def gpu_exporter(metric: str, matchers: str = "") -> str:
    jobs = "|".join(GPU_EXPORTER_JOBS)
    return f'{metric}{{job=~"{jobs}"{", " + matchers if matchers else ""}}}'


def gateway_tokens(gateway_namespace: str) -> str:
    return f'gateway_tokens_total{{job="{GATEWAY_JOB}", namespace="{gateway_namespace}"}}'


def held_gpus() -> str:
    """GPUs held per pod container now: requested by a pod bound to a node (a Pending pod holds none).

    `max` keeps one series per container, so a duplicate (a second kube-state-metrics, or a
    look-alike series) can never count twice.
    """
    return (
        "max by (namespace, pod, uid, container) ("
        + kube_state("kube_pod_container_resource_requests", 'resource="nvidia_com_gpu", node!=""')
        + ")"
    )


def token_increase(gateway_namespace: str) -> str:
    """Each token counter's increase since the previous minute; a reset or a new series counts from zero.

    `now` is the last sample of the minute and `before` the last sample before it, however old (up
    to `COUNTER_MEMORY`): consecutive minutes telescope to the exact change of the counter, also
    across minutes without a sample, and no lookback or staleness setting changes the sum.
    """
    series = gateway_tokens(gateway_namespace)
    now = f"last_over_time({series}[{BILLING_INTERVAL}])"
    before = f"last_over_time({series}[{COUNTER_MEMORY}] offset {BILLING_INTERVAL})"
    return f"({now} - {before}) >= 0 or {now} < {before} or ({now} unless {before})"


def billing_group(
    gateway_namespace: str, tenants: dict[str, tuple[str, str]], after: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """The per-minute billing samples, then the rules in `after` that read them at the same instant.

    `tenants` maps a tenant to (tier, cost center).
    """
    info = [
        {"record": TENANT_BILLING_INFO, "expr": "vector(1)", "labels": {"tenant": t, "tier": tier, "cost_center": cc}}
        for t, (tier, cc) in sorted(tenants.items())
    ]
    return {
        "name": "platform-billing",
        # Every sample stands for exactly this long: the integrals below depend on it.
        "interval": BILLING_INTERVAL,
        "rules": [
            {"record": BILLED_GPUS, "expr": f"sum by (tenant, namespace) ({held_gpus()} {TENANT_JOIN})"},
            {"record": BILLED_TOKENS, "expr": f"sum by (tenant, kind) ({token_increase(gateway_namespace)})"},
            *info,
            *after,
        ],
    }


def _filter(matchers: str) -> str:
    return "{" + matchers + "}" if matchers else ""


def gpu_hours(window: str, matchers: str = "", by: str = "tenant") -> str:
    """GPU-hours per tenant (or per `by` labels) over the `window` ending at the evaluation time."""
    return f"sum by ({by}) (sum_over_time({BILLED_GPUS}{_filter(matchers)}[{window}])) / {SAMPLE_SECONDS}"


def tokens(window: str, matchers: str = "") -> str:
    """Tokens per tenant and kind (prompt, completion) over the window."""
    return f"sum by (tenant, kind) (sum_over_time({BILLED_TOKENS}{_filter(matchers)}[{window}]))"


def gpu_cost(window: str, matchers: str = "") -> str:
    return f"sum by (tenant) ({gpu_hours(window, matchers)} * on(tenant) group_left {GPU_HOUR_PRICE})"


def token_cost(window: str, matchers: str = "") -> str:
    return f"sum by (tenant) ({tokens(window, matchers)} * on(tenant, kind) group_left {TOKEN_PRICE})"


def cost(window: str, matchers: str = "") -> str:
    """GPU plus token cost per tenant over the window; either part may be missing for a tenant."""
    gpu, tok = gpu_cost(window, matchers), token_cost(window, matchers)
    return f"({gpu} + {tok}) or {gpu} or {tok}"


@dataclass(frozen=True)
class Prices:
    """What one tenant pays: its tier's multiplier applied to the stack's price table."""

    multiplier: float
    gpu_hour: float
    prompt_token: float
    completion_token: float

    def token(self, kind: str) -> float:
        return self.prompt_token if kind == "prompt" else self.completion_token


def prices(pricing: Pricing, tier: str) -> Prices:
    multiplier = pricing.tier_multipliers.get(tier, 1.0)
    return Prices(
        multiplier=multiplier,
        gpu_hour=pricing.gpu_hour * multiplier,
        prompt_token=pricing.per_million_prompt_tokens * multiplier / 1e6,
        completion_token=pricing.per_million_completion_tokens * multiplier / 1e6,
    )
