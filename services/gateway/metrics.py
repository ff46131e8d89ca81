"""The gateway's metrics, by the names DESIGN.md §4 fixes for dashboards, rules and the adapter."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double the scrape for no use on dashboards.
disable_created_metrics()

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gateway_requests",
            "Requests by tenant, model, upstream and status code.",
            ["tenant", "model", "upstream", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to the last byte.",
            ["tenant", "model"],
            buckets=BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "gateway_tenant_queue_depth", "Requests waiting for an upstream slot.", ["tenant"], registry=r
        )
        self.inflight = Gauge("gateway_tenant_inflight", "Requests holding an upstream slot.", ["tenant"], registry=r)
        self.rate_limited = Counter(
            "gateway_rate_limited", "Requests refused by a limit.", ["tenant", "reason"], registry=r
        )
        self.tokens = Counter(
            "gateway_tokens", "Tokens from upstream usage reports.", ["tenant", "model", "kind"], registry=r
        )
        self.backend_up = Gauge(
            "gateway_ratelimit_backend_up",
            "1 when limits are shared through Redis, 0 when enforced per process.",
            registry=r,
        )
        self.config_reloads = Counter("gateway_config_reloads", "Tenant document reloads.", ["result"], registry=r)
