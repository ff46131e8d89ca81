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
                }
            },
        ),
        k8s("LimitRange", "tenant-limits", name, spec={"limits": []}),
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
) -> Resource:
    return k8s(
        "ConfigMap",
        "platform-capacity",
        "platform-system",
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


def gpu_deployment(
    namespace: str,
    name: str = "worker",
    gpus: float = 1.0,
    tolerate: bool = True,
    select: bool = True,
    **overrides: Any,
) -> Resource:
    container = {
        "name": "engine",
        "image": "vllm/vllm-openai:v0.11.2",
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
        "resources": {
            "requests": {"cpu": "1", "memory": "4Gi", "nvidia.com/gpu": str(int(gpus))},
            "limits": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": str(int(gpus))},
        },
    }
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
            "replicas": 1.0,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
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
    """A compliant stack: two tenants, a GPU worker with a fitting HPA."""
    return [
        capacity(),
        *tenant_namespace("acme", "acme"),
        *tenant_namespace("globex", "globex"),
        gpu_deployment("acme"),
        hpa("acme", "worker", 1.0),
    ]


def clone(resources: list[Resource]) -> list[Resource]:
    return [Resource(r.type, r.name, r.urn, copy.deepcopy(r.props)) for r in resources]
