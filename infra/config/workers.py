"""Inference workers of a tenant and the routes the gateway builds from them."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from infra.config.base import ImageRef, Int32, Model, ModelName, Quantity, SecretName, StorageClassName, dns_1035_label
from infra.config.engines import ENGINES

# The gateway's own route model: the stack file and the gateway's document share one definition.
from services.gateway.config import Route

__all__ = ["Autoscaling", "ModelCache", "Route", "Worker"]


class Autoscaling(Model):
    """HPA on per-pod queue depth; by default up by at most 4 pods a minute, down after 5 quiet minutes."""

    min_replicas: Int32 = Field(default=1, ge=1)
    max_replicas: Int32 = Field(default=2, ge=1)
    # Rendered in millis ("2500m"): below 0.001 it would be 0, which the HPA refuses.
    target_queue_depth: float = Field(default=5.0, ge=0.001, le=1_000_000)
    scale_up_window_seconds: int = Field(default=60, ge=0, le=3600)
    scale_up_pods: Int32 = Field(default=4, ge=1)
    scale_up_period_seconds: int = Field(default=60, ge=1, le=1800)
    scale_down_window_seconds: int = Field(default=300, ge=0, le=3600)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"maxReplicas ({self.max_replicas}) must be >= minReplicas ({self.min_replicas})")
        return self


class ModelCache(Model):
    size: Quantity
    storage_class: StorageClassName | None = None


class Worker(Model):
    name: str
    engine: str
    model: ModelName
    served_model_name: ModelName | None = None
    environment: str = "prod"
    gpus: int = Field(default=1, ge=0, le=16)
    cpu: Quantity | None = None
    cpu_limit: Quantity | None = None
    memory: Quantity | None = None
    memory_limit: Quantity | None = None
    max_model_len: int | None = Field(default=None, ge=128)
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    cache: ModelCache | None = None
    hf_token_secret: SecretName | None = None
    allow_internet_egress: bool | None = None
    drain_seconds: int = Field(default=30, ge=0, le=3600)
    image: ImageRef | None = None
    extra_args: list[str] = []
    autoscaling: Autoscaling = Autoscaling()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return dns_1035_label(value, "worker name", 40)

    @field_validator("engine")
    @classmethod
    def _engine(cls, value: str) -> str:
        if value not in ENGINES:
            raise ValueError(f"unknown engine {value!r}; known engines: {', '.join(sorted(ENGINES))}")
        return value

    @model_validator(mode="after")
    def _parallelism(self) -> Worker:
        if ENGINES[self.engine].tensor_parallel and self.gpus and self.tensor_parallel_size > self.gpus:
            raise ValueError(f"tensorParallelSize ({self.tensor_parallel_size}) cannot exceed gpus ({self.gpus})")
        return self

    @property
    def served_name(self) -> str:
        return self.served_model_name or self.model
