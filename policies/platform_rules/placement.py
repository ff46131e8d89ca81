"""GPU placement: GPU pods tolerate the pool's taint and select the pool; nothing else tolerates it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import contract
from .config import PolicyConfig
from .model import Resource, containers, quantity
from .rule import rule

GPU = contract.GPU_RESOURCE
# Charts that run GPU DaemonSets, and where their values carry tolerations.
GPU_CHARTS = {contract.NVIDIA_DEVICE_PLUGIN_CHART, contract.DCGM_EXPORTER_CHART}
# fake-gpu-operator has no tolerations value: its pods tolerate nvidia.com/gpu (Exists, NoSchedule) built in.
FAKE_OPERATOR = contract.FAKE_GPU_OPERATOR_CHART


def requests_gpu(pod: dict[str, Any]) -> bool:
    for container in containers(pod):
        resources = container.get("resources") or {}
        for section in ("requests", "limits"):
            if quantity((resources.get(section) or {}).get(GPU, 0)) > 0:
                return True
    return False


def tolerates(tolerations: list[dict[str, Any]] | None, key: str) -> bool:
    for toleration in tolerations or []:
        operator = toleration.get("operator", "Equal")
        effect = toleration.get("effect") or "NoSchedule"
        if effect != "NoSchedule":
            continue
        if (operator == "Exists" and toleration.get("key") in (None, "", key)) or (
            operator == "Equal" and toleration.get("key") == key
        ):
            return True
    return False


def selects_pool(pod: dict[str, Any], label: tuple[str, str]) -> bool:
    key, value = label
    if (pod.get("nodeSelector") or {}).get(key) == value:
        return True
    required = ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    # Every term must pin the pool: terms are ORed by the scheduler.
    return bool(terms) and all(
        any(
            expr.get("key") == key
            and (
                (expr.get("operator") == "In" and value in (expr.get("values") or []))
                or expr.get("operator") == "Exists"
            )
            for expr in term.get("matchExpressions") or []
        )
        for term in terms
    )


def _chart(resource: Resource) -> str:
    return contract.chart_name(resource.props.get("chart"))


@rule(
    name="gpu-placement",
    description=(
        "Pods requesting nvidia.com/gpu tolerate the GPU taint, select the GPU pool and limit GPUs to their request; "
        "GPU DaemonSet charts tolerate the taint."
    ),
    level="mandatory",
    severity="high",
)
def gpu_placement(resources: list[Resource], config: PolicyConfig) -> Iterator[tuple[str, str]]:
    key, label = config.gpu_taint_key, config.pool_label
    for resource in resources:
        pod = resource.pod_spec()
        if pod is not None and requests_gpu(pod):
            if not tolerates(pod.get("tolerations"), key):
                yield resource.display, f"{resource.display} requests {GPU} but does not tolerate the GPU taint {key!r}"
            if not selects_pool(pod, label):
                yield (
                    resource.display,
                    f"{resource.display} requests {GPU} but does not select the GPU pool {'='.join(label)!r}",
                )
            for container in containers(pod):
                resources_ = container.get("resources") or {}
                request, limit = (resources_.get("requests") or {}).get(GPU), (resources_.get("limits") or {}).get(GPU)
                if request is not None and limit is not None and quantity(request) != quantity(limit):
                    yield (
                        resource.display,
                        (
                            f"{resource.display} container {container.get('name')!r} requests {request} {GPU} "
                            f"but limits {limit}; they must be equal"
                        ),
                    )
        if resource.type == "kubernetes:helm.sh/v3:Release":
            chart, values = _chart(resource), resource.props.get("values") or {}
            if chart in GPU_CHARTS and not tolerates(values.get("tolerations"), key):
                yield (
                    resource.display,
                    f"Helm release {resource.props.get('name')!r} ({chart}) runs a GPU DaemonSet without tolerating {key!r} in values.tolerations",
                )
            if chart == FAKE_OPERATOR and key != GPU:
                yield (
                    resource.display,
                    f"Helm release {resource.props.get('name')!r} (fake-gpu-operator) only tolerates {GPU!r}, not the GPU taint {key!r}",
                )


@rule(
    name="gpu-taint-toleration-scoped",
    description="Pods that request no GPU do not tolerate the GPU taint.",
    level="advisory",
    severity="medium",
)
def gpu_taint_toleration_scoped(resources: list[Resource], config: PolicyConfig) -> Iterator[tuple[str, str]]:
    key = config.gpu_taint_key
    for resource in resources:
        pod = resource.pod_spec()
        if pod is not None and not requests_gpu(pod) and tolerates(pod.get("tolerations"), key):
            yield (
                resource.display,
                f"{resource.display} requests no GPU but tolerates the GPU taint {key!r}: it could take a GPU node's capacity",
            )
