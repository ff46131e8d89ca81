"""`platformctl preflight`: ask AWS whether the GPU pool a stack describes can exist.

Checks, with boto3 and the caller's AWS credentials, that the node group's instance type
exists, has GPUs, and is offered in the region and in every configured availability zone;
reports GPUs per node and the pool's GPU capacity at its maximum size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from infra.config import StackConfig


@dataclass
class PreflightResult:
    region: str
    instance_type: str
    problems: list[str] = field(default_factory=list)
    gpus_per_node: int = 0
    gpu_name: str = ""
    offered_zones: list[str] = field(default_factory=list)
    max_nodes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def gpu_capacity(self) -> int:
        return self.gpus_per_node * self.max_nodes


def region_of(raw_config: dict) -> str | None:
    return raw_config.get("aws:region")


def preflight(config: StackConfig, region: str, client=None) -> PreflightResult:
    if config.pool_mode != "eks" or config.gpu_pool.eks is None:
        raise ValueError(f"preflight checks EKS GPU pools; this stack's pool is {config.pool_mode!r}")
    eks = config.gpu_pool.eks
    ec2 = client or boto3.client("ec2", region_name=region)
    result = PreflightResult(region=region, instance_type=eks.instance_type, max_nodes=eks.max_size)
    try:
        described = ec2.describe_instance_types(InstanceTypes=[eks.instance_type])["InstanceTypes"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "InvalidInstanceType":
            result.problems.append(f"gpuPool.eks.instanceType: {eks.instance_type!r} does not exist in {region}")
            return result
        raise
    gpus = (described[0].get("GpuInfo") or {}).get("Gpus") or []
    result.gpus_per_node = sum(int(gpu.get("Count", 0)) for gpu in gpus)
    result.gpu_name = ", ".join(f"{g.get('Manufacturer', '')} {g.get('Name', '')}".strip() for g in gpus)
    if not result.gpus_per_node:
        result.problems.append(
            f"gpuPool.eks.instanceType: {eks.instance_type!r} has no GPUs; pick a GPU type (g5, g6, p4d, p5…)"
        )
    offerings = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [eks.instance_type]}]
    )["InstanceTypeOfferings"]
    result.offered_zones = sorted(offer["Location"] for offer in offerings)
    if not result.offered_zones:
        result.problems.append(f"gpuPool.eks.instanceType: {eks.instance_type!r} is not offered in {region}")
    for zone in eks.availability_zones:
        if result.offered_zones and zone not in result.offered_zones:
            result.problems.append(
                f"gpuPool.eks.availabilityZones: {eks.instance_type!r} is not offered in {zone} "
                f"(offered in {', '.join(result.offered_zones)})"
            )
    declared = config.platform.capacity.gpu
    if result.gpus_per_node and declared != result.gpu_capacity:
        result.problems.append(
            f"platform.capacity.nvidia.com/gpu: declared {declared}, but {eks.max_size} x {eks.instance_type} "
            f"provide {result.gpu_capacity}; quota shares would be measured against the wrong total"
        )
    return result


__all__ = ["PreflightResult", "preflight", "region_of", "BotoCoreError"]
