"""Worker settings: environment variables `MOCK_WORKER_*`, overridden by CLI flags."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticUseDefault
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class WorkerSettings(BaseSettings):
    """Everything the mock worker can be told; parsed once at start-up."""

    model_config = SettingsConfigDict(env_prefix="MOCK_WORKER_", extra="forbid")

    # NoDecode: the env var is a plain comma-separated list ("a,b"), not JSON.
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["mock-llama-8b"],
        description="Model names served; the first one is the default in logs.",
    )
    engine: Literal["vllm", "sglang"] = Field("vllm", description="Metric flavour to export.")
    slots: int = Field(8, ge=1, description="Concurrent requests decoded at once (batch size).")
    prefill_seconds: float = Field(0.02, ge=0, description="Time before the first token.")
    decode_seconds_per_token: float = Field(0.005, ge=0, description="Time per generated token.")
    prefill_seconds_per_token: float = Field(0.0, ge=0, description="Prefill time per uncached prompt token.")
    prefill_concurrency: int = Field(0, ge=0, description="Prefills computed at once (0: no limit).")
    cache_tokens: int = Field(262_144, ge=0, description="Prefix/KV cache capacity in tokens (0: no cache).")
    block_size: int = Field(16, ge=1, description="Tokens per cache block.")
    stream_interval: int = Field(1, ge=1, description="Tokens per streamed chunk after the first.")
    default_max_tokens: int = Field(16, ge=1, description="Output length when max_tokens is absent.")
    max_tokens_cap: int = Field(4096, ge=1, description="Requests asking for more get a 400.")
    failure_rate: float = Field(0.0, ge=0, le=1, description="Share of requests answered with 500.")
    seed: int | None = Field(None, description="Fixes failure injection and output text.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    fd: int | None = Field(None, description="Serve on this already-bound listening socket.")
    access_log: bool = False
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, list):
            value = [name for name in value if name]
            if not value:
                raise ValueError("MOCK_WORKER_MODELS / --model needs at least one model name")
        return value

    @field_validator("port", mode="before")
    @classmethod
    def _ignore_service_link(cls, value: object) -> object:
        # Kubernetes injects MOCK_WORKER_PORT=tcp://<ip>:<port> into pods when a Service is
        # named mock-worker (service links); that is the Service's address, not our setting.
        if isinstance(value, str) and "://" in value:
            raise PydanticUseDefault()
        return value
