"""Gateway settings (environment variables GATEWAY_*), parsed once at start."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # /metrics is served here only, never on the API port: it names every tenant, model and volume.
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    # The tenants document (keys as SHA-256 hashes, limits, upstreams, routes); reloaded when it changes.
    config_file: Path | None = None
    reload_interval_seconds: float = Field(default=1.0, gt=0)
    redis_url: str | None = None
    # Redis must answer within this, or the request goes on as if Redis were down (see fail_closed).
    redis_timeout_seconds: float = Field(default=0.25, gt=0)
    # Redis down: keep serving with per-process limits (default), or refuse with 503.
    fail_closed: bool = False
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # A non-streamed response must be complete within this (a total deadline, not reset by each byte);
    # a stream may go this long without a byte.
    upstream_timeout_seconds: float = Field(default=120.0, gt=0)
    # The engine's status line must arrive within this (default: the upstream timeout).
    first_byte_timeout_seconds: float | None = Field(default=None, gt=0)
    max_response_bytes: int = Field(default=16 * 1_048_576, ge=1024)
    # A client that accepts no byte of its response this long (default: the upstream timeout) is
    # ended as gone (499): it would otherwise hold its slots and its engine for as long as it likes.
    client_write_timeout_seconds: float | None = Field(default=None, gt=0)
    # One SSE event larger than this ends the stream with an error event.
    max_event_bytes: int = Field(default=1_048_576, ge=1024)
    connect_timeout_seconds: float = Field(default=2.0, gt=0)
    # Upstream requests in flight across all tenants; above it, tenants queue and are served by weight.
    max_upstream_concurrency: int = Field(default=256, ge=1)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_open_seconds: float = Field(default=10.0, gt=0)
    # Output tokens per choice for a request that states no max_tokens, unless its tenant sets
    # limits.maxTokens: sent upstream as its max_tokens, and charged up front.
    default_max_tokens: int = Field(default=256, ge=1, le=2**31 - 1)
    # On SIGTERM: requests still running this long after it are ended (streams with an SSE error event).
    drain_seconds: float = Field(default=30.0, ge=0)
    # A replica's concurrency slots in Redis expire this long after it stops renewing them (it died).
    lease_seconds: float = Field(default=15.0, ge=1)
    # A replica reserves a slice of a tenant's limits once it admits this many of the tenant's
    # requests in a second, and admits from it without asking Redis (limit_grants.py); 0: never,
    # every request is checked and counted in Redis as it comes.
    reserve_min_rate: int = Field(default=50, ge=0)
    # Client connections: a request's head and body must arrive within request_timeout_seconds;
    # an idle keep-alive connection closes after keep_alive_seconds; above max_connections new
    # requests get 503; a request head over max_header_bytes or max_headers headers gets 431.
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    keep_alive_seconds: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=4096, ge=1)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    max_headers: int = Field(default=100, ge=8)
    # Shared upstreams for tenants without their own: "vllm=http://a:8001;sglang=http://b:8002", a default
    # upstream, JSON route policies (services/gateway/config.py, with_env_defaults).
    upstreams: str | None = None
    default_upstream: str | None = None
    route_policies: str | None = None
    log_level: str = "INFO"

    @property
    def first_byte_timeout(self) -> float:
        return self.first_byte_timeout_seconds or self.upstream_timeout_seconds

    @property
    def client_write_timeout(self) -> float:
        return self.client_write_timeout_seconds or self.upstream_timeout_seconds

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("redis", "rediss") or not parts.hostname:
                raise ValueError("expected redis://[[user]:password@]host[:port][/db] or rediss://… (TLS)")
        return value or None
