"""Fixtures in Pulumi's wire form (camelCase, numbers as floats), as the pack and the mocks see them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from policies.platform_rules import Resource


def k8s(
    kind: str, name: str, namespace: str | None = None, api: str = "v1", group_token: str = "core/v1", **body: Any
) -> Resource:
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    meta.update(body.pop("metadata", {}))
    return Resource(
        type=f"kubernetes:{group_token}:{kind}",
        name=f"{namespace or 'cluster'}-{name}",
        urn=f"urn:pulumi:test::gpu-platform::kubernetes:{group_token}:{kind}::{name}",
        props={"apiVersion": api, "kind": kind, "metadata": meta, **body},
    )


def tenant_namespace(name: str, tenant: str) -> list[Resource]:
    """A namespace with every guardrail in place and a silver-sized quota."""
    return [
        k8s("Namespace", name, metadata={"labels": {"platform.io/tenant": tenant}}),
        k8s(
            "ResourceQuota",
            "tenant-quota",
            name,
            spec={
                "hard": {
                    "requests.cpu": "4",
                    "limits.cpu": "8",
                    "requests.memory": "8Gi",
                    "limits.memory": "16Gi",
                    "requests.nvidia.com/gpu": "1",
                    "pods": "10",
                    "persistentvolumeclaims": "2",
                    "requests.storage": "20Gi",
                }
            },
        ),
        k8s(
            "LimitRange",
            "tenant-limits",
            name,
            spec={
                "limits": [
                    {"type": "Pod", "max": {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": "1"}},
                    {
                        "type": "Container",
                        "max": {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": "1"},
                        "default": {"cpu": "500m", "memory": "512Mi", "nvidia.com/gpu": "0"},
                        "defaultRequest": {"cpu": "250m", "memory": "256Mi", "nvidia.com/gpu": "0"},
                    },
                ]
            },
        ),
        k8s(
            "NetworkPolicy",
            "default-deny",
            name,
            "networking.k8s.io/v1",
            "networking.k8s.io/v1",
            spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        ),
    ]


def capacity(
    cpu="64",
    memory="256Gi",
    gpu="8",
    share="0.3",
    ratio="1.0",
    taint="nvidia.com/gpu=true:NoSchedule",
    label="platform.io/pool=gpu",
    namespace="platform-system",
    labelled=True,
) -> Resource:
    """The platform's capacity record, found by its label (not its namespace)."""
    return k8s(
        "ConfigMap",
        "platform-capacity",
        namespace,
        metadata={"labels": {"platform.io/capacity": "true"} if labelled else {}},
        data={
            "cpu": cpu,
            "memory": memory,
            "gpu": gpu,
            "maxTenantShare": share,
            "overSubscriptionRatio": ratio,
            "gpuTaint": taint,
            "gpuPoolLabel": label,
        },
    )


def node_patch(name: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> Resource:
    meta: dict[str, Any] = {"name": name, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = annotations
    return Resource(
        type="kubernetes:core/v1:NodePatch",
        name=f"gpu-node-{name}",
        urn=f"urn:pulumi:test::gpu-platform::kubernetes:core/v1:NodePatch::gpu-node-{name}",
        props={"apiVersion": "v1", "kind": "Node", "metadata": meta},
    )


def helm_release(name: str, chart: str, values: dict[str, Any]) -> Resource:
    return Resource(
        type="kubernetes:helm.sh/v3:Release",
        name=name,
        urn=f"urn:pulumi:test::gpu-platform::kubernetes:helm.sh/v3:Release::{name}",
        props={"name": name, "chart": chart, "namespace": "gpu-operator", "values": values},
    )


def fake_pool(gpus_per_node: float = 8.0, nodes: tuple[str, ...] = ("gpu-1",), pool: str = "default") -> list[Resource]:
    """fake-gpu-operator advertising `gpus_per_node` on each node the stack labels into its pool."""
    values = {
        "topology": {
            "nodePoolLabelKey": "run.ai/simulated-gpu-node-pool",
            "nodePools": {pool: {"gpuProduct": "Tesla-K80", "gpuCount": gpus_per_node, "gpuMemory": 11441.0}},
        }
    }
    labels = {"platform.io/pool": "gpu", "run.ai/simulated-gpu-node-pool": pool}
    return [
        helm_release("fake-gpu-operator", "oci://ghcr.io/run-ai/fake-gpu-operator/fake-gpu-operator", values),
        *(node_patch(node, labels) for node in nodes),
    ]


def device_plugin_pool(
    nodes: tuple[str, ...] = ("gpu-node-01",), gpus_per_node: str | None = "1", replicas: int | None = 4
) -> list[Resource]:
    """The NVIDIA device plugin, time-sliced `replicas` ways, on nodes recording their physical GPUs."""
    values: dict[str, Any] = {
        "nodeSelector": {"gpu": "true"},
        "tolerations": [{"key": "gpu-only", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
    }
    if replicas:
        sharing = (
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n"
            f"      replicas: {replicas}\n"
        )
        values["config"] = {"map": {"default": sharing}, "default": "default"}
    annotations = {"platform.io/gpus-per-node": gpus_per_node} if gpus_per_node is not None else None
    return [
        helm_release("nvidia-device-plugin", "nvidia-device-plugin", values),
        *(node_patch(node, {"gpu": "true"}, annotations) for node in nodes),
    ]


def eks_node_group(max_size: float = 4.0, gpus: str | None = "4") -> Resource:
    tags = {"k8s.io/cluster-autoscaler/enabled": "true"}
    if gpus is not None:
        tags["k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"] = gpus
    return Resource(
        type="aws:eks/nodeGroup:NodeGroup",
        name="gpu-node-group",
        urn="urn:pulumi:test::gpu-platform::aws:eks/nodeGroup:NodeGroup::gpu-node-group",
        props={
            "clusterName": "inference-prod",
            "instanceTypes": ["g5.12xlarge"],
            "labels": {"platform.io/pool": "gpu"},
            "scalingConfig": {"minSize": 1.0, "desiredSize": 2.0, "maxSize": max_size},
            "tags": tags,
        },
    )


def gpu_deployment(
    namespace: str,
    name: str = "worker",
    gpus: float = 1.0,
    tolerate: bool = True,
    select: bool = True,
    replicas: float = 1.0,
    strategy: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
    **overrides: Any,
) -> Resource:
    """A worker-shaped Deployment; GPU workers roll without surge (a GPU spare is rarely free), as the program's do."""
    container = {
        "name": "engine",
        "image": "vllm/vllm-openai:v0.11.2",
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
        "resources": resources
        if resources is not None
        else {
            "requests": {"cpu": "1", "memory": "4Gi", "nvidia.com/gpu": str(int(gpus))},
            "limits": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": str(int(gpus))},
        },
    }
    if strategy is None and gpus:
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0.0, "maxUnavailable": 1.0}}
    pod: dict[str, Any] = {"containers": [container], "securityContext": {"runAsNonRoot": True}}
    if tolerate:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    if select:
        pod["nodeSelector"] = {"platform.io/pool": "gpu"}
    pod.update(overrides)
    return k8s(
        "Deployment",
        name,
        namespace,
        "apps/v1",
        "apps/v1",
        spec={
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
            **({"strategy": strategy} if strategy else {}),
        },
    )


def hpa(namespace: str, target: str, max_replicas: float) -> Resource:
    return k8s(
        "HorizontalPodAutoscaler",
        target,
        namespace,
        "autoscaling/v2",
        "autoscaling/v2",
        spec={
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 1.0,
            "maxReplicas": max_replicas,
        },
    )


@pytest.fixture
def healthy() -> list[Resource]:
    """A compliant stack: a fake GPU pool of 8, two tenants, a GPU worker with a fitting HPA."""
    return [
        capacity(),
        *fake_pool(),
        *tenant_namespace("acme", "acme"),
        *tenant_namespace("globex", "globex"),
        gpu_deployment("acme"),
        hpa("acme", "worker", 1.0),
    ]


def without(resources: list[Resource], *kinds: str) -> list[Resource]:
    return [r for r in resources if r.kind not in kinds]


def clone(resources: list[Resource]) -> list[Resource]:
    return [Resource(r.type, r.name, r.urn, copy.deepcopy(r.props)) for r in resources]
