"""What the program and the policy pack must agree on, in one place.

The program renders these names and values; the pack finds and checks resources by them. Both
import this module, so a rename on one side is a rename on the other. Standard library only: the
pack runs in its own virtual environment, without the program.
"""

from __future__ import annotations

import hashlib

from .quantity import BINARY_UNITS, DECIMAL_UNITS, parse_quantity

__all__ = [
    "BINARY_UNITS",
    "CAPACITY_CONFIGMAP",
    "CAPACITY_KEYS",
    "CAPACITY_LABEL",
    "CAPACITY_LABEL_VALUE",
    "COST_CENTER_LABEL",
    "DCGM_EXPORTER_CHART",
    "DECIMAL_UNITS",
    "EKS_GPU_TAG",
    "ENVIRONMENT_LABEL",
    "FAKE_GPU_OPERATOR_CHART",
    "FAKE_POOL_LABEL",
    "GPU_RESOURCE",
    "GPUS_PER_NODE_ANNOTATION",
    "NVIDIA_DEVICE_PLUGIN_CHART",
    "TENANT_LABEL",
    "TIER_LABEL",
    "chart_name",
    "hash_api_key",
    "image_pinned",
    "parse_quantity",
]

# -- labels -------------------------------------------------------------------------------------
# A namespace carrying TENANT_LABEL belongs to that tenant; every tenant rule keys on it.
TENANT_LABEL = "platform.io/tenant"
TIER_LABEL = "platform.io/tier"
ENVIRONMENT_LABEL = "platform.io/environment"
COST_CENTER_LABEL = "cost-center"

# -- the capacity record ------------------------------------------------------------------------
# The platform's ConfigMap that states the cluster's size. The pack finds it by this label, in
# whichever namespace the stack puts the platform, so renaming that namespace cannot hide it.
CAPACITY_LABEL = "platform.io/capacity"
CAPACITY_LABEL_VALUE = "true"
CAPACITY_CONFIGMAP = "platform-capacity"  # its name; the pack does not rely on it
# Keys of the record: cluster size (Kubernetes quantities), thresholds the stack may only tighten,
# and where the GPU pool is (taint "key=value:Effect", label "key=value").
CAPACITY_KEYS = ("cpu", "memory", "gpu", "maxTenantShare", "overSubscriptionRatio", "gpuPoolLabel", "gpuTaint")

# -- the GPU pool, as the pack measures it ------------------------------------------------------
GPU_RESOURCE = "nvidia.com/gpu"
FAKE_GPU_OPERATOR_CHART = "fake-gpu-operator"
NVIDIA_DEVICE_PLUGIN_CHART = "nvidia-device-plugin"
DCGM_EXPORTER_CHART = "dcgm-exporter"
# The node label fake-gpu-operator's topology selects its simulated pools by (the chart's default).
FAKE_POOL_LABEL = "run.ai/simulated-gpu-node-pool"
# Physical GPUs of an on-prem node, recorded on the node's NodePatch: the device plugin multiplies
# them by its time-slicing replicas, and nothing else in the stack states them.
GPUS_PER_NODE_ANNOTATION = "platform.io/gpus-per-node"
# GPUs per instance of an EKS node group, as cluster-autoscaler reads them to scale from zero.
EKS_GPU_TAG = "k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"


def chart_name(chart: object) -> str:
    """A Helm release's chart name from its `chart` input: a name, a repo/name or an OCI address."""
    return str(chart or "").rstrip("/").rsplit("/", 1)[-1]


def image_pinned(image: str) -> bool:
    """Pinned: a digest, or a tag other than `latest` (a registry port is not a tag)."""
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    return ":" in name and not name.endswith(":latest")


def hash_api_key(key: str) -> str:
    """The only form in which the gateway knows an API key: SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
