"""`platformctl preflight`: ask AWS whether the GPU pool a stack describes can exist.

Checks, with boto3 and the caller's AWS credentials, that the node group's instance type
exists, has GPUs, and is offered in the region and in every configured availability zone;
reports GPUs per node and the pool's GPU capacity at its maximum size.
"""

from __future__ import annotations

import re
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


class AwsRefused(Exception):
    """AWS answered, but not with facts about the instance type (credentials, permissions, throttling)."""


# Codes with which EC2 refuses the instance type itself: a problem of the stack, not of the caller.
_BAD_INSTANCE_TYPE = ("InvalidInstanceType", "InvalidParameterValue")


def region_of(raw_config: dict) -> str | None:
    return raw_config.get("aws:region")


def check_region(region: object) -> str:
    """`region` if it looks like an AWS region; ValueError naming the key otherwise."""
    if not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d{1,2}", region):
        raise ValueError(f"aws:region: {region!r} is not an AWS region name (e.g. us-west-2)")
    return region


def preflight(config: StackConfig, region: str, client=None) -> PreflightResult:
    if config.pool_mode != "eks" or config.gpu_pool.eks is None:
        raise ValueError(f"gpuPool.mode: preflight checks EKS GPU pools; this stack's pool is {config.pool_mode!r}")
    eks = config.gpu_pool.eks
    ec2 = client or boto3.client("ec2", region_name=region)
    result = PreflightResult(region=region, instance_type=eks.instance_type, max_nodes=eks.max_size)
    try:
        described = ec2.describe_instance_types(InstanceTypes=[eks.instance_type]).get("InstanceTypes") or []
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _BAD_INSTANCE_TYPE:
            raise AwsRefused(str(exc)) from None
        described = []
    if not described:
        result.problems.append(f"gpuPool.eks.instanceType: {eks.instance_type!r} does not exist in {region}")
        return result
    gpus = (described[0].get("GpuInfo") or {}).get("Gpus") or []
    result.gpus_per_node = sum(int(gpu.get("Count", 0)) for gpu in gpus)
    result.gpu_name = ", ".join(f"{g.get('Manufacturer', '')} {g.get('Name', '')}".strip() for g in gpus)
    if not result.gpus_per_node:
        result.problems.append(
            f"gpuPool.eks.instanceType: {eks.instance_type!r} has no GPUs; pick a GPU type (g5, g6, p4d, p5…)"
        )
    try:
        offerings = ec2.describe_instance_type_offerings(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [eks.instance_type]}]
        ).get("InstanceTypeOfferings", [])
    except ClientError as exc:
        raise AwsRefused(str(exc)) from None
    result.offered_zones = sorted(offer["Location"] for offer in offerings if "Location" in offer)
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


__all__ = ["AwsRefused", "BotoCoreError", "PreflightResult", "check_region", "preflight", "region_of"]
