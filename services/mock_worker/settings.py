"""Mock worker settings: environment (MOCK_WORKER_*) or command-line flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MOCK_WORKER_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    models: list[str] = ["mock-llama-8b"]
    # Which engine's metric names to export: the platform's dashboards and HPA read both.
    engine: Literal["vllm", "sglang"] = "vllm"
    # Concurrent sequences in the "batch"; more requests wait for a slot, as in a real engine.
    slots: int = Field(default=8, ge=1)
    prefill_seconds: float = Field(default=0.02, ge=0)
    decode_seconds_per_token: float = Field(default=0.005, ge=0)
    default_max_tokens: int = Field(default=16, ge=1)
    max_tokens_cap: int = Field(default=4096, ge=1)
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    seed: int | None = None
