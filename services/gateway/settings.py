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
    # The tenants document (keys as SHA-256 hashes, limits, upstreams, routes); reloaded when it changes.
    config_file: Path | None = None
    reload_interval_seconds: float = Field(default=1.0, gt=0)
    redis_url: str | None = None
    # Redis down: keep serving with per-process limits (default), or refuse with 503.
    fail_closed: bool = False
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    upstream_timeout_seconds: float = Field(default=120.0, gt=0)
    connect_timeout_seconds: float = Field(default=2.0, gt=0)
    # Upstream requests in flight across all tenants; above it, tenants queue and are served by weight.
    max_upstream_concurrency: int = Field(default=256, ge=1)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_open_seconds: float = Field(default=10.0, gt=0)
    # Tokens charged up front when a request states no max_tokens.
    default_max_tokens: int = Field(default=256, ge=1)
    drain_seconds: float = Field(default=30.0, ge=0)
    # Seed B's formats: "vllm=http://a:8001;sglang=http://b:8002", a default upstream, JSON route policies.
    upstreams: str | None = None
    default_upstream: str | None = None
    route_policies: str | None = None
    log_level: str = "INFO"

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("redis", "rediss") or not parts.hostname:
                raise ValueError("expected redis://[[user]:password@]host[:port][/db] or rediss://… (TLS)")
        return value or None
