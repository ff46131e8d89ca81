"""Prometheus metrics under the real engines' names (vLLM `vllm:*`, SGLang `sglang:*`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)


@dataclass(frozen=True)
class MetricNames:
    """One engine's metric names; counters are given without `_total` (prometheus_client adds it)."""

    waiting: str
    running: str
    time_to_first_token: str
    e2e_latency: str
    prompt_tokens: str
    generation_tokens: str
    request_success: str | None
    kv_cache_usage: str
    # vLLM counts prefix-cache queries and hits in tokens; SGLang exports a hit-rate gauge instead.
    prefix_cache_queries: str | None = None
    prefix_cache_hits: str | None = None
    cache_hit_rate: str | None = None


ENGINE_METRIC_NAMES: dict[str, MetricNames] = {
    # vllm/engine/metrics.py (v0) and vllm/v1/metrics/loggers.py
    "vllm": MetricNames(
        waiting="vllm:num_requests_waiting",
        running="vllm:num_requests_running",
        time_to_first_token="vllm:time_to_first_token_seconds",
        e2e_latency="vllm:e2e_request_latency_seconds",
        prompt_tokens="vllm:prompt_tokens",
        generation_tokens="vllm:generation_tokens",
        request_success="vllm:request_success",
        # Current vLLM (v1 engine) names; older releases called the gauge vllm:gpu_cache_usage_perc.
        kv_cache_usage="vllm:kv_cache_usage_perc",
        prefix_cache_queries="vllm:prefix_cache_queries",
        prefix_cache_hits="vllm:prefix_cache_hits",
    ),
    # sglang/srt/metrics/collector.py
    "sglang": MetricNames(
        waiting="sglang:num_queue_reqs",
        running="sglang:num_running_reqs",
        time_to_first_token="sglang:time_to_first_token_seconds",
        e2e_latency="sglang:e2e_request_latency_seconds",
        prompt_tokens="sglang:prompt_tokens",
        generation_tokens="sglang:generation_tokens",
        request_success=None,
        kv_cache_usage="sglang:token_usage",
        cache_hit_rate="sglang:cache_hit_rate",
    ),
}

# vLLM's finished_reason values: the mock produces "length", and "abort" for dropped streams.
FINISHED_REASONS = ("stop", "length", "abort")

# vLLM's own bucket boundaries, so dashboards built for the real engine read the same.
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
E2E_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)


@dataclass(frozen=True)
class ModelMetrics:
    """One model_name's children of the request metrics."""

    time_to_first_token: Histogram
    e2e_latency: Histogram
    prompt_tokens: Counter
    generation_tokens: Counter
    request_success: dict[str, Counter]
    prefix_queries: Counter | None
    prefix_hits: Counter | None


class EngineMetrics:
    """The worker's registry; queue gauges are read from the engine at scrape time."""

    def __init__(self, engine: str, models: list[str]) -> None:
        names = ENGINE_METRIC_NAMES[engine]
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        label = ["model_name"]
        reg = self.registry
        self._waiting = Gauge(names.waiting, "Number of requests waiting to be processed.", label, registry=reg)
        self._running = Gauge(names.running, "Number of requests currently running.", label, registry=reg)
        self.time_to_first_token = Histogram(
            names.time_to_first_token,
            "Histogram of time to first token in seconds.",
            label,
            buckets=TTFT_BUCKETS,
            registry=reg,
        )
        self.e2e_latency = Histogram(
            names.e2e_latency,
            "Histogram of end to end request latency in seconds.",
            label,
            buckets=E2E_BUCKETS,
            registry=reg,
        )
        self.prompt_tokens = Counter(names.prompt_tokens, "Number of prefill tokens processed.", label, registry=reg)
        self.generation_tokens = Counter(
            names.generation_tokens, "Number of generation tokens processed.", label, registry=reg
        )
        self.request_success = (
            Counter(
                names.request_success,
                "Count of successfully processed requests.",
                ["model_name", "finished_reason"],
                registry=reg,
            )
            if names.request_success
            else None
        )
        self._kv_usage = Gauge(names.kv_cache_usage, "KV-cache usage. 1 means 100 percent usage.", label, registry=reg)
        self.prefix_queries = self.prefix_hits = self._hit_rate = None
        if names.prefix_cache_queries and names.prefix_cache_hits:
            self.prefix_queries = Counter(
                names.prefix_cache_queries,
                "Prefix cache queries, in terms of number of queried tokens.",
                label,
                registry=reg,
            )
            self.prefix_hits = Counter(
                names.prefix_cache_hits,
                "Prefix cache hits, in terms of number of cached tokens.",
                label,
                registry=reg,
            )
        if names.cache_hit_rate:
            self._hit_rate = Gauge(names.cache_hit_rate, "The prefix cache hit rate.", label, registry=reg)
        self._looked_up = dict.fromkeys(models, 0)
        self._found = dict.fromkeys(models, 0)
        # Creating every child up front makes all series exist (at 0) before the first
        # request, and saves the locked labels() lookup on the request path.
        self.per_model = {model: self._children(model) for model in models}

    def _children(self, model: str) -> ModelMetrics:
        success = {}
        if self.request_success is not None:
            success = {reason: self.request_success.labels(model, reason) for reason in FINISHED_REASONS}
        return ModelMetrics(
            time_to_first_token=self.time_to_first_token.labels(model),
            e2e_latency=self.e2e_latency.labels(model),
            prompt_tokens=self.prompt_tokens.labels(model),
            generation_tokens=self.generation_tokens.labels(model),
            request_success=success,
            prefix_queries=self.prefix_queries.labels(model) if self.prefix_queries else None,
            prefix_hits=self.prefix_hits.labels(model) if self.prefix_hits else None,
        )

    def bind_queue(self, model: str, waiting: Callable[[], float], running: Callable[[], float]) -> None:
        self._waiting.labels(model).set_function(waiting)
        self._running.labels(model).set_function(running)

    def bind_cache(self, models: list[str], usage: Callable[[], float]) -> None:
        """KV-cache use is one pool shared by the models; each model_name series reports it."""
        for model in models:
            self._kv_usage.labels(model).set_function(usage)
            if self._hit_rate is not None:
                self._hit_rate.labels(model).set_function(
                    lambda m=model: self._found[m] / self._looked_up[m] if self._looked_up[m] else 0.0
                )

    def count_prefix(self, model: str, queried: int, hit: int) -> None:
        self._looked_up[model] += queried
        self._found[model] += hit
        children = self.per_model[model]
        if children.prefix_queries is not None:
            children.prefix_queries.inc(queried)
            children.prefix_hits.inc(hit)
