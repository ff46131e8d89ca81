"""The metric names components rely on (DESIGN.md §4), and the adapter rules that serve them to HPAs."""

from __future__ import annotations

from typing import Any

# Per-pod custom metric the workers' HPAs scale on; prometheus-adapter derives it from the engines' queues.
QUEUE_DEPTH_METRIC = "inference_queue_depth"
ENGINE_QUEUE_SERIES = ("vllm:num_requests_waiting", "sglang:num_queue_reqs")
GATEWAY_QUEUE_METRIC = "gateway_tenant_queue_depth"

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
ENGINE_METRICS = (
    "vllm:num_requests_waiting",
    "vllm:num_requests_running",
    "vllm:time_to_first_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:kv_cache_usage_perc",
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "sglang:num_queue_reqs",
    "sglang:num_running_reqs",
)
GPU_METRICS = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE")


def _series_selector(names: tuple[str, ...], extra: str) -> str:
    return '{__name__=~"' + "|".join(names) + '",' + extra + "}"


def adapter_rules() -> dict[str, list[dict[str, Any]]]:
    """prometheus-adapter `rules.custom` and `rules.external`."""
    engines = _series_selector(ENGINE_QUEUE_SERIES, 'namespace!="",pod!=""')
    return {
        "custom": [
            {
                # vLLM and SGLang name their queue differently; HPAs see one per-pod metric.
                "seriesQuery": engines,
                "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
                "name": {"matches": "^(" + "|".join(ENGINE_QUEUE_SERIES) + ")$", "as": QUEUE_DEPTH_METRIC},
                "metricsQuery": "sum by (<<.GroupBy>>) ("
                + _series_selector(ENGINE_QUEUE_SERIES, "<<.LabelMatchers>>")
                + ")",
            }
        ],
        "external": [
            {
                "seriesQuery": f'{GATEWAY_QUEUE_METRIC}{{tenant!=""}}',
                "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
                "name": {"matches": f"^{GATEWAY_QUEUE_METRIC}$", "as": GATEWAY_QUEUE_METRIC},
                "metricsQuery": f"sum by (tenant) ({GATEWAY_QUEUE_METRIC}{{<<.LabelMatchers>>}})",
            }
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
