"""Prometheus rules of the platform: per-tenant recording rules, alerts and chargeback prices.

Pure functions returning rule groups (the `groups:` of a Prometheus rule file, which is also a
PrometheusRule's spec), so promtool can check and unit-test exactly what MonitoringStack deploys.
Tenants are attributed through `platform:namespace_tenant:info` (metrics_catalog.tenant_info_group),
generated from the stack, so no kube-state-metrics label allowlist is needed.
"""

from __future__ import annotations

from typing import Any

from components import billing
from components.metrics_catalog import ENGINE_QUEUE_SERIES, tenant_info_group
from infra.config import Pricing, Thresholds

TENANT_JOIN = billing.TENANT_JOIN
RUNBOOKS = "https://github.com/gpu-platform/gpu-platform/blob/main/components/monitoring-runbooks.md"


def _record(name: str, expr: str, **labels: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"record": name, "expr": expr}
    if labels:
        rule["labels"] = labels
    return rule


def gpu_group() -> dict[str, Any]:
    return {
        "name": "platform-gpu",
        "rules": [
            _record(
                "namespace:gpu_allocated:sum",
                'sum by (namespace) (kube_pod_container_resource_requests{resource="nvidia_com_gpu"})',
            ),
            _record("tenant:gpu_allocated:sum", f"sum by (tenant) (namespace:gpu_allocated:sum {TENANT_JOIN})"),
            _record("namespace:gpu_used:count", 'count by (namespace) (DCGM_FI_DEV_GPU_UTIL{namespace!=""} > 0)'),
            _record("tenant:gpu_used:count", f"sum by (tenant) (namespace:gpu_used:count {TENANT_JOIN})"),
            # GPU utilisation per namespace and per tenant, from DCGM's real metric name.
            _record("namespace:gpu_utilization:avg", 'avg by (namespace) (DCGM_FI_DEV_GPU_UTIL{namespace!=""})'),
            _record(
                "tenant:gpu_utilization:avg", f'avg by (tenant) (DCGM_FI_DEV_GPU_UTIL{{namespace!=""}} {TENANT_JOIN})'
            ),
            _record(
                "tenant:gpu_memory_used_bytes:sum",
                f'sum by (tenant) (DCGM_FI_DEV_FB_USED{{namespace!=""}} * 1048576 {TENANT_JOIN})',
            ),
        ],
    }


def inference_group() -> dict[str, Any]:
    queues = '{__name__=~"' + "|".join(ENGINE_QUEUE_SERIES) + '"}'
    return {
        "name": "platform-inference",
        "rules": [
            _record("namespace_pod:inference_queue_depth:sum", f"sum by (namespace, pod) ({queues})"),
            _record(
                "namespace:inference_queue_depth:sum", "sum by (namespace) (namespace_pod:inference_queue_depth:sum)"
            ),
            _record(
                "namespace:inference_queue_depth:avg", "avg by (namespace) (namespace_pod:inference_queue_depth:sum)"
            ),
            _record(
                "tenant:inference_queue_depth:sum",
                f"sum by (tenant) (namespace:inference_queue_depth:sum {TENANT_JOIN})",
            ),
        ],
    }


def _ratio(selector: str) -> str:
    # A tenant without a single matching request has ratio 0, not no series at all.
    total = "sum by (tenant) (rate(gateway_requests_total[5m]))"
    return f"(sum by (tenant) (rate(gateway_requests_total{{{selector}}}[5m])) or {total} * 0) / {total}"


def gateway_group() -> dict[str, Any]:
    rules = [
        _record("tenant:gateway_requests:rate5m", "sum by (tenant) (rate(gateway_requests_total[5m]))"),
        _record("tenant:gateway_errors:ratio_rate5m", _ratio('code=~"5.."')),
        _record("tenant:gateway_rate_limited:ratio_rate5m", _ratio('code="429"')),
        _record("tenant:gateway_tokens:rate5m", "sum by (tenant, kind) (rate(gateway_tokens_total[5m]))"),
        _record("tenant:gateway_queue_depth:sum", "sum by (tenant) (gateway_tenant_queue_depth)"),
    ]
    for quantile in ("50", "95", "99"):
        rules.append(
            _record(
                f"tenant:gateway_request_duration_seconds:p{quantile}",
                f"histogram_quantile(0.{quantile}, sum by (tenant, le) (rate(gateway_request_duration_seconds_bucket[5m])))",
            )
        )
    return {"name": "platform-gateway", "rules": rules}


def chargeback_rules(pricing: Pricing, tier_of: dict[str, str]) -> list[dict[str, Any]]:
    """Per-tenant prices as constant series, then what the trailing hour cost, from the billing integrals.

    They run in the billing group, after its samples: rules within a group are evaluated in order
    at one timestamp, while separate groups run on their own timers, so a cost rule in another
    group could read the hour's integral with or without the sample recorded at that instant.
    """
    rules = []
    for tenant, tier in sorted(tier_of.items()):
        price = billing.prices(pricing, tier)
        rules.append(_record(billing.GPU_HOUR_PRICE, f"vector({price.gpu_hour:.12g})", tenant=tenant))
        for kind in ("prompt", "completion"):
            rules.append(_record(billing.TOKEN_PRICE, f"vector({price.token(kind):.12g})", tenant=tenant, kind=kind))
    rules += [
        _record("tenant:gpu_cost_per_hour:sum", billing.gpu_cost("1h")),
        _record("tenant:token_cost_per_hour:sum", billing.token_cost("1h")),
        _record("tenant:cost_per_hour:sum", billing.cost("1h")),
    ]
    return rules


def _alert(name: str, expr: str, duration: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description, "runbook_url": f"{RUNBOOKS}#{name.lower()}"},
    }


def alerts_group(thresholds: Thresholds, gateway_namespace: str) -> dict[str, Any]:
    up_gateway = f'up{{namespace="{gateway_namespace}", service="gateway"}}'
    return {
        "name": "platform-alerts",
        "rules": [
            _alert(
                "TenantQuotaNearlyExhausted",
                f'(kube_resourcequota{{type="used"}} / ignoring(type) (kube_resourcequota{{type="hard"}} > 0)) {TENANT_JOIN} > {thresholds.quota_used_ratio:g}',
                "15m",
                "warning",
                "Tenant {{ $labels.tenant }} uses over "
                + f"{thresholds.quota_used_ratio:.0%}"
                + " of its {{ $labels.resource }} quota",
                "Namespace {{ $labels.namespace }} has used {{ $value | humanizePercentage }} of {{ $labels.resource }}.",
            ),
            _alert(
                "InferenceQueueDepthHigh",
                f"namespace:inference_queue_depth:avg {TENANT_JOIN} > {thresholds.queue_depth:g}",
                "5m",
                "warning",
                "Requests queue in {{ $labels.namespace }} (tenant {{ $labels.tenant }})",
                "Average queue per worker pod is {{ $value }}, above "
                + f"{thresholds.queue_depth:g}"
                + " for 5 minutes: the HPA is at its maximum or pods cannot schedule.",
            ),
            _alert(
                "GpuAllocatedButIdle",
                f"((namespace:gpu_allocated:sum > 0) and on(namespace) (namespace:gpu_utilization:avg < {thresholds.gpu_idle_utilization:g})) {TENANT_JOIN}",
                f"{thresholds.gpu_idle_minutes}m",
                "info",
                "GPUs of tenant {{ $labels.tenant }} sit idle in {{ $labels.namespace }}",
                "Allocated GPUs average under "
                + f"{thresholds.gpu_idle_utilization:g}"
                + "% utilisation: scale the worker down or release the GPUs.",
            ),
            _alert(
                "TenantRateLimitedRatioHigh",
                f"tenant:gateway_rate_limited:ratio_rate5m > {thresholds.rate_limited_ratio:g}",
                "10m",
                "warning",
                "Tenant {{ $labels.tenant }} is often rate limited",
                "{{ $value | humanizePercentage }} of its requests get 429: its limits or quota may be too small.",
            ),
            _alert(
                "InferenceWorkerDown",
                f"up {TENANT_JOIN} == 0",
                "5m",
                "critical",
                "A scrape target of tenant {{ $labels.tenant }} is down",
                "{{ $labels.namespace }}/{{ $labels.pod }} has not answered scrapes for 5 minutes.",
            ),
            _alert(
                "GatewayDown",
                f"sum({up_gateway}) == 0 or absent({up_gateway})",
                "5m",
                "critical",
                "No gateway replica is up",
                "Every tenant's API calls are failing: no gateway pod has been scraped successfully for 5 minutes.",
            ),
        ],
    }


def rule_groups(
    tenant_of: dict[str, str],
    tier_of: dict[str, str],
    thresholds: Thresholds,
    pricing: Pricing,
    gateway_namespace: str,
    cost_center_of: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Everything MonitoringStack deploys as the `gpu-platform` PrometheusRule."""
    cost_centers = cost_center_of or {}
    return [
        tenant_info_group(tenant_of),
        gpu_group(),
        inference_group(),
        gateway_group(),
        billing.billing_group(
            gateway_namespace,
            {tenant: (tier, cost_centers.get(tenant, "")) for tenant, tier in tier_of.items()},
            chargeback_rules(pricing, tier_of),
        ),
        alerts_group(thresholds, gateway_namespace),
    ]
