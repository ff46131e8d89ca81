"""The cluster: flavour, capacity, platform namespaces and the GPU pool."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from infra.config.base import (
    Count,
    EksClusterName,
    ImageRef,
    KubernetesVersion,
    LabelValue,
    Model,
    NodeName,
    PlatformNamespace,
    QualifiedName,
    Quantity,
    dns_label,
)


class Capacity(Model):
    """What the cluster offers; the 30% rule and quota shares are measured against it."""

    cpu: Quantity
    memory: Quantity
    gpu: Count = Field(default=0, alias="nvidia.com/gpu")


class PlatformNamespaces(Model):
    system: PlatformNamespace = "platform-system"
    gateway: PlatformNamespace = "platform-gateway"
    monitoring: PlatformNamespace = "monitoring"
    gpu_operator: PlatformNamespace = "gpu-operator"

    @field_validator("*")
    @classmethod
    def _labels(cls, value: str) -> str:
        return dns_label(value, "namespace name")


class PlatformSettings(Model):
    flavour: Literal["minikube", "kind", "onprem", "eks"]
    capacity: Capacity
    over_subscription_ratio: float = Field(default=1.0, ge=1.0)
    max_tenant_share: float = Field(default=0.30, gt=0.0, le=1.0)
    namespaces: PlatformNamespaces = PlatformNamespaces()
    # The Kubernetes minor version manifests are validated against in the offline preview.
    kubernetes_version: KubernetesVersion = "1.33"


class Taint(Model):
    key: QualifiedName
    value: LabelValue
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]

    @classmethod
    def parse(cls, text: str) -> Taint:
        match = re.fullmatch(r"([\w./-]+)=([\w.-]*):(\w+)", text)
        if not match:
            raise ValueError(f"{text!r} is not a taint: expected key=value:Effect, e.g. nvidia.com/gpu=true:NoSchedule")
        return cls(key=match.group(1), value=match.group(2), effect=match.group(3))

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}"


class NodeLabel(Model):
    key: QualifiedName
    value: LabelValue

    @classmethod
    def parse(cls, text: str) -> NodeLabel:
        match = re.fullmatch(r"([\w./-]+)=([\w.-]*)", text)
        if not match:
            raise ValueError(f"{text!r} is not a node label: expected key=value, e.g. platform.io/pool=gpu")
        return cls(key=match.group(1), value=match.group(2))

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class FakeGpus(Model):
    """fake-gpu-operator's simulated pool (its `topology.nodePools` entry)."""

    pool: LabelValue = "default"
    gpus_per_node: int = Field(default=8, ge=1, le=64)
    gpu_product: LabelValue = "Tesla-K80"
    gpu_memory_mib: int = Field(default=11441, ge=1)


class TimeSlicing(Model):
    """NVIDIA device plugin time-slicing: each physical GPU is advertised `replicas` times."""

    replicas: int = Field(ge=2, le=48)


class EksNodeGroup(Model):
    """A managed GPU node group added to an existing EKS cluster."""

    cluster_name: EksClusterName
    instance_type: str = "g5.12xlarge"
    ami_type: Literal["AL2023_x86_64_NVIDIA", "AL2_x86_64_GPU", "BOTTLEROCKET_x86_64_NVIDIA"] = "AL2023_x86_64_NVIDIA"
    subnet_ids: list[str] = Field(min_length=1)
    availability_zones: list[str] = []
    min_size: int = Field(default=1, ge=0)
    max_size: int = Field(default=4, ge=1)
    desired_size: int = Field(default=2, ge=0)
    disk_size_gib: int = Field(default=200, ge=20)

    @model_validator(mode="after")
    def _sizes(self) -> EksNodeGroup:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"sizes must satisfy minSize <= desiredSize <= maxSize, got {self.min_size}, {self.desired_size}, {self.max_size}"
            )
        return self


def _parse(kind):
    return BeforeValidator(lambda v: kind.parse(v) if isinstance(v, str) else v)


class GpuPoolSettings(Model):
    """The GPU pool. Workers select `label` and tolerate `taint`; nothing else may.

    `mode` defaults from the platform flavour: minikube and kind get fake GPUs, onprem labels
    existing nodes and installs the NVIDIA device plugin, eks adds a managed node group.
    """

    mode: Literal["fake", "onprem", "eks"] | None = None
    label: Annotated[NodeLabel, _parse(NodeLabel)] = NodeLabel(key="platform.io/pool", value="gpu")
    taint: Annotated[Taint, _parse(Taint)] = Taint(key="nvidia.com/gpu", value="true", effect="NoSchedule")
    # Existing nodes to label (and taint) as the pool, for the fake and onprem modes.
    nodes: list[NodeName] = []
    # A single-node cluster must keep scheduling system pods: label the node but do not taint it.
    taint_nodes: bool = True
    gpus_per_node: int | None = Field(default=None, ge=1, le=64)
    fake: FakeGpus = FakeGpus()
    time_slicing: TimeSlicing | None = None
    eks: EksNodeGroup | None = None


class Images(Model):
    """Container images, pinned by tag (or digest). The platform's own images are built from services/."""

    mock_worker: ImageRef = "ghcr.io/gpu-platform/mock-worker:0.1.0"
    gateway: ImageRef = "ghcr.io/gpu-platform/gateway:0.1.0"
    vllm: ImageRef = "vllm/vllm-openai:v0.11.2"
    sglang: ImageRef = "lmsysorg/sglang:v0.5.5"
    redis: ImageRef = "redis:7.4.6-alpine"

    @field_validator("*")
    @classmethod
    def _pinned(cls, value: str) -> str:
        name = value.rsplit("/", 1)[-1]
        if "@sha256:" not in value and (":" not in name or name.endswith(":latest")):
            raise ValueError(f"{value!r} must be pinned to a tag other than latest, or a digest")
        return value
