"""The metric names components rely on (dashboards, rules, HPAs), and the adapter rules that serve them to HPAs."""

from __future__ import annotations

from typing import Any

from infra.config.engines import ENGINES

# Per-pod custom metric the workers' HPAs scale on; prometheus-adapter derives it from the engines' queues.
QUEUE_DEPTH_METRIC = "inference_queue_depth"
# From the engine table: every engine's waiting-queue gauge, and every engine metric rules may use.
ENGINE_QUEUE_SERIES = tuple(sorted({e.queue_metric for e in ENGINES.values()}, reverse=True))
# Per-pod custom metric the gateway's own HPA scales on: requests in flight in one gateway replica. There
# is no metrics-server here to scale on CPU, and in-flight requests are what a replica is short of first.
GATEWAY_INFLIGHT_METRIC = "gateway_inflight_requests"
GATEWAY_INFLIGHT_SERIES = "gateway_tenant_inflight"

GATEWAY_METRICS = (
    "gateway_requests_total",
    "gateway_request_duration_seconds",
    "gateway_tenant_queue_depth",
    "gateway_tenant_inflight",
    "gateway_rate_limited_total",
    "gateway_tokens_total",
    # The endpoint picker (services/gateway/picker.py).
    "gateway_picker_picks_total",
    "gateway_picker_score_total",
    "gateway_picker_prefix_blocks_total",
)
ENGINE_METRICS = tuple(dict.fromkeys(name for e in ENGINES.values() for name in e.metrics))
GPU_METRICS = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE")


def _series_selector(names: tuple[str, ...], extra: str) -> str:
    return '{__name__=~"' + "|".join(names) + '",' + extra + "}"


def adapter_rules() -> dict[str, list[dict[str, Any]]]:
    """prometheus-adapter `rules.custom`: per-pod metrics the HPAs of the workers and the gateway read.

    No external metrics: an external metric is namespaced to the HPA reading it, so a gateway-wide series
    could only ever serve HPAs in the gateway's own namespace.
    """
    engines = _series_selector(ENGINE_QUEUE_SERIES, 'namespace!="",pod!=""')
    pods = {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}
    return {
        "custom": [
            {
                # vLLM and SGLang name their queue differently; HPAs see one per-pod metric.
                "seriesQuery": engines,
                "resources": pods,
                "name": {"matches": "^(" + "|".join(ENGINE_QUEUE_SERIES) + ")$", "as": QUEUE_DEPTH_METRIC},
                "metricsQuery": "sum by (<<.GroupBy>>) ("
                + _series_selector(ENGINE_QUEUE_SERIES, "<<.LabelMatchers>>")
                + ")",
            },
            {
                "seriesQuery": f'{GATEWAY_INFLIGHT_SERIES}{{namespace!="",pod!=""}}',
                "resources": pods,
                "name": {"matches": f"^{GATEWAY_INFLIGHT_SERIES}$", "as": GATEWAY_INFLIGHT_METRIC},
                "metricsQuery": f"sum by (<<.GroupBy>>) ({GATEWAY_INFLIGHT_SERIES}{{<<.LabelMatchers>>}})",
            },
        ],
    }


def tenant_info_group(namespaces: dict[str, str]) -> dict[str, Any]:
    """One constant series per tenant namespace, so rules can join any `namespace` label to its tenant.

    Generated from the stack's tenants: no kube-state-metrics label allowlist is needed.
    """
    return {
        "name": "platform-tenants",
        "rules": [
            {
                "record": "platform:namespace_tenant:info",
                "expr": "vector(1)",
                "labels": {"namespace": ns, "tenant": tenant},
            }
            for ns, tenant in sorted(namespaces.items())
        ],
    }
