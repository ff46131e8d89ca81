"""The gateway's metrics, by the names dashboards, rules and the adapter query (components/metrics_catalog.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double the scrape for no use on dashboards.
disable_created_metrics()

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class GatewayMetrics:
    """The metrics, and the request path's ways to record them.

    Label children are looked up once per label set and kept: `labels()` takes a lock and
    builds a tuple on every call. Label values are bounded by the tenants document (tenants,
    their models and upstreams) and by the gateway's own status codes and reasons.
    """

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
        self.watcher_up = Gauge(
            "gateway_config_watcher_up", "1 while the tenant document is watched for changes.", registry=r
        )
        self.script_errors = Counter(
            "gateway_ratelimit_script_errors", "Limit script calls that answered with an error.", registry=r
        )
        self._children: dict[tuple, object] = {}

    def _child(self, metric, *labels: str):
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, tenant: str, model: str, upstream: str, code: str, seconds: float | None = None) -> None:
        """A request answered; `seconds` from its arrival to its last byte when it reached an upstream."""
        self._child(self.requests, tenant, model, upstream, code).inc()
        if seconds is not None:
            self._child(self.duration, tenant, model).observe(seconds)

    def refused(self, tenant: str, model: str, reason: str) -> None:
        self._child(self.rate_limited, tenant, reason).inc()
        self._child(self.requests, tenant, model, "", "429").inc()

    def count_tokens(self, tenant: str, model: str, prompt: int, completion: int) -> None:
        self._child(self.tokens, tenant, model, "prompt").inc(prompt)
        self._child(self.tokens, tenant, model, "completion").inc(completion)

    def declare_tenants(self, tenants) -> None:
        """Per-tenant gauges exist at 0 from the start: an HPA or alert reads 0, not "no data", for a quiet tenant."""
        for tenant in tenants:
            self.queued(tenant)
            self.holding(tenant)

    def queued(self, tenant: str) -> Gauge:
        return self._child(self.queue_depth, tenant)

    def holding(self, tenant: str) -> Gauge:
        return self._child(self.inflight, tenant)
