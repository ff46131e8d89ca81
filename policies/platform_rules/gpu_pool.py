"""How many GPUs the stack's GPU pool provides, computed from the resources that make it.

The stack's capacity record only declares a number; these resources are what Kubernetes will
actually be told to advertise, so the pack measures GPU shares against the smaller of the two:
- fake pool: fake-gpu-operator's `topology.nodePools.<pool>.gpuCount` x the nodes the stack labels
  into that pool (NodePatch);
- on-prem: the NVIDIA device plugin's time-slicing replicas x the GPU nodes (NodePatch carrying the
  pool label) x the physical GPUs each node records in its `platform.io/gpus-per-node` annotation;
- EKS: each GPU node group's `scalingConfig.maxSize` x the GPUs per instance in its
  cluster-autoscaler node-template tag (the program reads that count from AWS's instance type data).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import contract
from .model import Resource, fmt, mapping, quantity

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_PATCH = "kubernetes:core/v1:NodePatch"
EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"


@dataclass(frozen=True)
class PoolGpus:
    gpus: Decimal | None  # None: the stack has no GPU pool the pack recognises
    source: str
    problems: tuple[tuple[str, str], ...] = ()


def pool_gpus(resources: list[Resource], pool_label_key: str) -> PoolGpus:
    total, sources, problems, found = Decimal(0), [], [], False
    nodes = _labelled_nodes(resources)
    for resource in resources:
        if resource.type == HELM_RELEASE:
            chart = contract.chart_name(resource.props.get("chart"))
            values = mapping(resource.props.get("values"))
            if chart == contract.FAKE_GPU_OPERATOR_CHART:
                found = True
                gpus, detail = _fake(values, nodes)
            elif chart == contract.NVIDIA_DEVICE_PLUGIN_CHART:
                found = True
                gpus, detail, missing = _device_plugin(values, nodes, pool_label_key)
                problems.extend(missing)
            else:
                continue
            total += gpus
            sources.append(f"Helm release {resource.props.get('name')!r} ({chart}: {detail})")
        elif resource.type == EKS_NODE_GROUP and _is_gpu_group(resource, pool_label_key):
            found = True
            gpus, detail, problem = _node_group(resource)
            if problem:
                problems.append((resource.display, problem))
            total += gpus
            sources.append(f"{resource.display} ({detail})")
    if not found:
        return PoolGpus(None, "", tuple(problems))
    return PoolGpus(total, "the GPU pool: " + "; ".join(sources), tuple(problems))


def _labelled_nodes(resources: list[Resource]) -> dict[str, Resource]:
    """Node name -> its NodePatch; a node patched twice counts once (the last patch's labels win)."""
    nodes: dict[str, Resource] = {}
    for resource in resources:
        if resource.type == NODE_PATCH:
            name = resource.metadata.get("name")
            if isinstance(name, str) and name:
                nodes[name] = resource
    return nodes


def _labels(node: Resource) -> dict[str, Any]:
    return mapping(node.metadata.get("labels"))


def _fake(values: dict[str, Any], nodes: dict[str, Resource]) -> tuple[Decimal, str]:
    topology = mapping(values.get("topology"))
    label_key = topology.get("nodePoolLabelKey") or contract.FAKE_POOL_LABEL
    total, parts = Decimal(0), []
    for pool, settings in sorted(mapping(topology.get("nodePools")).items()):
        count = quantity(mapping(settings).get("gpuCount", 0))
        members = sorted(n for n, node in nodes.items() if _labels(node).get(label_key) == pool)
        total += count * len(members)
        parts.append(f"pool {pool!r}: {fmt(count)} GPUs x {len(members)} labelled nodes")
    return total, ", ".join(parts) or "no node pools"


def _device_plugin(
    values: dict[str, Any], nodes: dict[str, Resource], pool_label_key: str
) -> tuple[Decimal, str, list[tuple[str, str]]]:
    selector = mapping(values.get("nodeSelector"))
    members = [
        node
        for _, node in sorted(nodes.items())
        if (selector and all(_labels(node).get(k) == v for k, v in selector.items()))
        or (not selector and pool_label_key in _labels(node))
    ]
    replicas = _time_slicing_replicas(values)
    physical, problems = Decimal(0), []
    for node in members:
        raw = mapping(node.metadata.get("annotations")).get(contract.GPUS_PER_NODE_ANNOTATION)
        count = quantity(raw) if raw is not None else Decimal(0)
        if raw is None or count <= 0:
            problems.append(
                (
                    node.display,
                    f"{node.display} is in the GPU pool but does not record its physical GPUs in the "
                    f"{contract.GPUS_PER_NODE_ANNOTATION!r} annotation; the pack counts it as 0 GPUs",
                )
            )
        physical += count
    detail = f"{len(members)} labelled nodes, {fmt(physical)} physical GPUs x {replicas} time-slicing replicas"
    return physical * replicas, detail, problems


def _time_slicing_replicas(values: dict[str, Any]) -> int:
    """The largest nvidia.com/gpu replicas of any config the plugin may load (1 without time-slicing)."""
    configs = mapping(mapping(values.get("config")).get("map")).values()
    replicas = 1
    for text in configs:
        document = _load(text)
        sharing = mapping(mapping(document).get("sharing"))
        for section in ("timeSlicing", "mps"):
            entries = mapping(sharing.get(section)).get("resources")
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict) and entry.get("name") == contract.GPU_RESOURCE:
                    replicas = max(replicas, int(quantity(entry.get("replicas", 1))))
    return replicas


def _load(text: Any) -> Any:
    if isinstance(text, dict):
        return text
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        pass
    try:
        # The device plugin's config is YAML; the pack's environment has PyYAML through the Pulumi SDK.
        import yaml
    except ImportError:  # pragma: no cover - the Pulumi SDK depends on PyYAML
        return {}
    try:
        return yaml.safe_load(str(text))
    except yaml.YAMLError:
        return {}


def _is_gpu_group(group: Resource, pool_label_key: str) -> bool:
    return pool_label_key in mapping(group.props.get("labels")) or contract.EKS_GPU_TAG in mapping(
        group.props.get("tags")
    )


def _node_group(group: Resource) -> tuple[Decimal, str, str]:
    max_size = quantity(mapping(group.props.get("scalingConfig")).get("maxSize", 0))
    raw = mapping(group.props.get("tags")).get(contract.EKS_GPU_TAG)
    per_node = quantity(raw) if raw is not None else Decimal(0)
    detail = f"maxSize {fmt(max_size)} x {fmt(per_node)} GPUs per instance"
    problem = ""
    if raw is None or per_node <= 0:
        problem = (
            f"{group.display} does not record its GPUs per instance in the tag {contract.EKS_GPU_TAG!r}; "
            "the pack counts it as 0 GPUs"
        )
    return max_size * per_node, detail, problem
