"""The GPU pool modes, one entry each: which flavours default to it, what it requires, what it provides.

`gpuPool.mode`'s allowed values, its default per flavour, its validation and the pool's real GPU count
(the ceiling of `platform.capacity.nvidia.com/gpu`) come from `POOL_MODES`. What the mode creates in
the cluster is components/gpu_node_pool.py's `BUILDERS` entry of the same name (a test keeps the two
tables' keys equal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.config.platform import GpuPoolSettings


@dataclass(frozen=True)
class PoolMode:
    name: str
    # Platform flavours whose stacks get this mode unless `gpuPool.mode` says otherwise.
    default_for: tuple[str, ...]
    # Raises ValueError("gpuPool.<key>: …") for settings this mode cannot work with.
    validate: Callable[[GpuPoolSettings], None]
    # GPUs the pool really provides at its largest; None where only the cloud can say.
    gpus: Callable[[GpuPoolSettings], int | None]
    # Labels (and taints) existing nodes listed under `gpuPool.nodes`.
    labels_nodes: bool


def _needs_nodes(pool: GpuPoolSettings, mode: str) -> None:
    if not pool.nodes:
        raise ValueError(f"gpuPool.nodes: the {mode} GPU pool needs the names of the nodes to label")
    if pool.eks is not None:
        raise ValueError(f"gpuPool.eks: only valid with mode eks (this pool is {mode})")


def _validate_fake(pool: GpuPoolSettings) -> None:
    _needs_nodes(pool, "fake")
    if pool.taint.key != "nvidia.com/gpu":
        raise ValueError(
            "gpuPool.taint: fake-gpu-operator's pods only tolerate the key nvidia.com/gpu; use it with the fake pool"
        )


def _validate_onprem(pool: GpuPoolSettings) -> None:
    _needs_nodes(pool, "onprem")
    if pool.gpus_per_node is None:
        raise ValueError("gpuPool.gpusPerNode: say how many physical GPUs each on-prem node has")


def _validate_eks(pool: GpuPoolSettings) -> None:
    if pool.eks is None:
        raise ValueError("gpuPool.eks: the eks GPU pool needs clusterName and subnetIds")


def _fake_gpus(pool: GpuPoolSettings) -> int:
    return (pool.gpus_per_node or pool.fake.gpus_per_node) * len(pool.nodes)


def _onprem_gpus(pool: GpuPoolSettings) -> int:
    replicas = pool.time_slicing.replicas if pool.time_slicing else 1
    return (pool.gpus_per_node or 0) * replicas * len(pool.nodes)


def _eks_gpus(pool: GpuPoolSettings) -> int | None:
    from infra.instance_types import GPU_INSTANCE_TYPES

    known = GPU_INSTANCE_TYPES.get(pool.eks.instance_type) if pool.eks else None
    return known[2] * pool.eks.max_size if known else None


POOL_MODES: dict[str, PoolMode] = {
    mode.name: mode
    for mode in (
        PoolMode("fake", ("minikube", "kind"), _validate_fake, _fake_gpus, labels_nodes=True),
        PoolMode("onprem", ("onprem",), _validate_onprem, _onprem_gpus, labels_nodes=True),
        PoolMode("eks", ("eks",), _validate_eks, _eks_gpus, labels_nodes=False),
    )
}


def default_mode(flavour: str) -> str:
    return next(mode.name for mode in POOL_MODES.values() if flavour in mode.default_for)
