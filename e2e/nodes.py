"""The kwok nodes that stand for a stack's cluster, as that cluster has them before `pulumi up`.

Only what the cluster itself gives a node is set here (names, kubelet labels, the kind/kubeadm
control-plane taint, the EKS node group's labels and taints, capacity). What the program does
to nodes (its NodePatch labels and taints) and what its charts do (GPU capacity from the fake
GPU operator or the device plugin, see e2e/releases.py) is left for the program to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from e2e.releases import PHYSICAL_GPUS
from infra.config import StackConfig
from infra.instance_types import GPU_INSTANCE_TYPES
from infra.preview.capture import Capture
from infra.quantity import format_bytes, format_cpu

REPO = Path(__file__).resolve().parents[1]
KWOK = {"kwok.x-k8s.io/node": "fake"}
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
EKS_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}
# The existing EKS cluster's system node group (not the program's): two m5.2xlarge.
EKS_SYSTEM_NODES, EKS_SYSTEM_TYPE = 2, "m5.2xlarge"
EKS_SYSTEM_SIZE = (8, "32Gi")


def node(
    name: str,
    cpu: str,
    memory: str,
    *,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    physical_gpus: int = 0,
) -> dict[str, Any]:
    capacity = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "200Gi"}
    annotations = dict(KWOK)
    if physical_gpus:
        annotations[PHYSICAL_GPUS] = str(physical_gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": annotations,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                **(labels or {}),
            },
        },
        "spec": {"taints": taints or []},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def for_stack(config: StackConfig, capture: Capture) -> list[dict[str, Any]]:
    flavour = config.platform.flavour
    cpu, memory = format_cpu(config.platform.capacity.cpu), format_bytes(config.platform.capacity.memory)
    if flavour == "kind":
        return _kind(cpu, memory)
    if flavour == "minikube":
        # minikube's one node is its control plane, untainted.
        return [node("minikube", cpu, memory, labels={CONTROL_PLANE: "", "minikube.k8s.io/primary": "true"})]
    if flavour == "onprem":
        # The onprem stack's kubeadm node: a control plane, its taint removed so that it runs workloads.
        pool = config.gpu_pool
        return [
            node(name, cpu, memory, labels={CONTROL_PLANE: ""}, physical_gpus=pool.gpus_per_node) for name in pool.nodes
        ]
    if flavour == "eks":
        return _eks(capture)
    raise ValueError(f"no e2e node layout for flavour {flavour!r}")


def _kind(cpu: str, memory: str) -> list[dict[str, Any]]:
    # kind names nodes <cluster>-control-plane, <cluster>-worker, <cluster>-worker2, ...; every
    # node sees the whole host, which the stack declares as its capacity.
    cluster = yaml.safe_load((REPO / "stacks" / "kind-cluster.yaml").read_text())
    name = cluster.get("name", "kind")
    roles = [n["role"] for n in cluster["nodes"]]
    nodes, workers = [], 0
    for role in roles:
        if role == "control-plane":
            # kind taints the control plane only when the cluster has workers.
            taints = [{"key": CONTROL_PLANE, "effect": "NoSchedule"}] if "worker" in roles else []
            nodes.append(node(f"{name}-control-plane", cpu, memory, labels={CONTROL_PLANE: ""}, taints=taints))
        else:
            workers += 1
            nodes.append(node(f"{name}-worker{workers if workers > 1 else ''}", cpu, memory))
    return nodes


def _eks(capture: Capture) -> list[dict[str, Any]]:
    nodes = []
    for index in range(EKS_SYSTEM_NODES):
        nodes.append(
            node(
                f"ip-10-0-0-{10 + index}.us-west-2.compute.internal",
                str(EKS_SYSTEM_SIZE[0]),
                EKS_SYSTEM_SIZE[1],
                labels={"node.kubernetes.io/instance-type": EKS_SYSTEM_TYPE, "eks.amazonaws.com/nodegroup": "system"},
            )
        )
    for group in capture.of_type("aws:eks/nodeGroup:NodeGroup"):
        inputs = group.inputs
        instance_type = inputs["instanceTypes"][0]
        vcpus, memory_mib, gpus, *_ = GPU_INSTANCE_TYPES[instance_type]
        taints = [
            {"key": t["key"], "value": t.get("value", ""), "effect": EKS_EFFECTS[t["effect"]]}
            for t in inputs.get("taints", [])
        ]
        labels = {
            **inputs.get("labels", {}),
            "eks.amazonaws.com/nodegroup": group.name,
            "eks.amazonaws.com/capacityType": inputs.get("capacityType", "ON_DEMAND"),
            "node.kubernetes.io/instance-type": instance_type,
        }
        for index in range(int(inputs["scalingConfig"]["desiredSize"])):
            nodes.append(
                node(
                    f"ip-10-0-1-{10 + index}.us-west-2.compute.internal",
                    str(vcpus),
                    f"{memory_mib}Mi",
                    labels=labels,
                    taints=taints,
                    physical_gpus=gpus,
                )
            )
    return nodes
