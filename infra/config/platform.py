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
    StorageClassName,
    dns_label,
)
from infra.config.pool_modes import POOL_MODES
from policies.platform_rules.contract import image_pinned


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
    # The cluster's nodes that run ordinary (non-GPU) pods: the gateway, Redis, monitoring. Only used to
    # check that tainting the GPU pool leaves somewhere for them to run.
    nodes: list[NodeName] = []
    # StorageClass of every PVC the platform creates (Redis, Prometheus, model caches) unless a PVC names its
    # own; None uses the cluster's default StorageClass, which kubeadm clusters and EKS >= 1.30 do not have.
    storage_class: StorageClassName | None = None


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

    mode: str | None = None
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

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str | None) -> str | None:
        if value is not None and value not in POOL_MODES:
            raise ValueError(f"unknown GPU pool mode {value!r}; known modes: {', '.join(sorted(POOL_MODES))}")
        return value


# The platform's own images: image name -> Dockerfile, built by `make images` (docker build from the
# repository root). Nobody publishes them: they are built, then loaded into the cluster or pushed to
# `images.registry`.
PLATFORM_IMAGES = {"gateway": "services/gateway/Dockerfile", "mock-worker": "services/mock_worker/Dockerfile"}
PLATFORM_VERSION = "0.1.0"
# `localhost/` never resolves to a public registry, so an image that was not loaded fails to pull
# instead of fetching somebody else's image of the same name.
DEFAULT_REGISTRY = "localhost/gpu-platform"


def platform_image(name: str, registry: str = DEFAULT_REGISTRY, tag: str = PLATFORM_VERSION) -> str:
    return f"{registry.rstrip('/')}/{name}:{tag}"


class Images(Model):
    """Container images, pinned by tag (or digest).

    `gateway` and `mockWorker` default to `<registry>/<name>:<tag>`, the names `make images` builds.
    """

    registry: str = Field(default=DEFAULT_REGISTRY, pattern=r"^[a-z0-9]([a-z0-9._:/-]*[a-z0-9])?$")
    tag: str = Field(default=PLATFORM_VERSION, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    mock_worker: ImageRef | None = None
    gateway: ImageRef | None = None
    vllm: ImageRef = "vllm/vllm-openai:v0.11.2"
    sglang: ImageRef = "lmsysorg/sglang:v0.5.5"
    redis: ImageRef = "redis:7.4.6-alpine"

    @model_validator(mode="before")
    @classmethod
    def _platform_images(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        registry, tag = data.get("registry", DEFAULT_REGISTRY), data.get("tag", PLATFORM_VERSION)
        if isinstance(registry, str) and isinstance(tag, str):
            for field_name, alias, image in (
                ("mock_worker", "mockWorker", "mock-worker"),
                ("gateway", "gateway", "gateway"),
            ):
                if data.get(field_name) is None and data.get(alias) is None:
                    data[alias] = platform_image(image, registry, tag)
        return data

    @field_validator("mock_worker", "gateway", "vllm", "sglang", "redis")
    @classmethod
    def _pinned(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not image_pinned(value):  # the policy pack's workload-security applies the same test
            raise ValueError(f"{value!r} must be pinned to a tag other than latest, or a digest")
        return value

    def platform_images(self) -> dict[str, str]:
        """Image name -> the reference the manifests use, for `make images`."""
        return {"gateway": self.gateway, "mock-worker": self.mock_worker}
