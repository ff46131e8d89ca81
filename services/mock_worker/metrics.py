"""The engine metrics the platform relies on, under vLLM's or SGLang's exact names."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0)

# engine -> (waiting, running, ttft, e2e, prompt tokens, generation tokens, successes)
NAMES = {
    "vllm": (
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:time_to_first_token_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:prompt_tokens",
        "vllm:generation_tokens",
        "vllm:request_success",
    ),
    "sglang": (
        "sglang:num_queue_reqs",
        "sglang:num_running_reqs",
        "sglang:time_to_first_token_seconds",
        "sglang:e2e_request_latency_seconds",
        "sglang:prompt_tokens",
        "sglang:generation_tokens",
        "sglang:num_requests",
    ),
}


class EngineMetrics:
    def __init__(self, engine: str):
        waiting, running, ttft, e2e, prompt, generation, success = NAMES[engine]
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        self.waiting = Gauge(waiting, "Requests waiting for a slot.", labels, registry=self.registry)
        self.running = Gauge(running, "Requests holding a slot.", labels, registry=self.registry)
        self.ttft = Histogram(ttft, "Time to first token.", labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.e2e = Histogram(e2e, "End-to-end request latency.", labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        # prometheus_client appends `_total` to counters, giving e.g. vllm:prompt_tokens_total.
        self.prompt_tokens = Counter(prompt, "Prompt tokens processed.", labels, registry=self.registry)
        self.generation_tokens = Counter(generation, "Tokens generated.", labels, registry=self.registry)
        self.success = Counter(success, "Requests finished.", labels, registry=self.registry)
