"""GPU facts of common EC2 instance types, for the offline preview's AWS mock.

Under `pulumi up` the program asks AWS (`ec2.get_instance_type`); offline there is no AWS, so
the preview answers that invoke from this table. `platformctl preflight` always asks AWS.
"""

from __future__ import annotations

# instance type -> (vCPUs, memory MiB, GPU count, GPU name, GPU memory MiB)
GPU_INSTANCE_TYPES: dict[str, tuple[int, int, int, str, int]] = {
    "g5.xlarge": (4, 16384, 1, "A10G", 24576),
    "g5.2xlarge": (8, 32768, 1, "A10G", 24576),
    "g5.12xlarge": (48, 196608, 4, "A10G", 24576),
    "g5.48xlarge": (192, 786432, 8, "A10G", 24576),
    "g6.xlarge": (4, 16384, 1, "L4", 22888),
    "g6.12xlarge": (48, 196608, 4, "L4", 22888),
    "g6e.12xlarge": (48, 393216, 4, "L40S", 46068),
    "p4d.24xlarge": (96, 1179648, 8, "A100", 40960),
    "p5.48xlarge": (192, 2097152, 8, "H100", 81920),
}


class UnknownInstanceType(ValueError):
    """An instance type the offline table does not know; its message names the stack key."""


def get_instance_type_result(args: dict) -> dict:
    """The `aws:ec2/getInstanceType:getInstanceType` invoke result, in wire form."""
    name = args["instanceType"]
    if name not in GPU_INSTANCE_TYPES:
        known = ", ".join(sorted(GPU_INSTANCE_TYPES))
        raise UnknownInstanceType(
            f"gpuPool.eks.instanceType: the offline preview knows no GPU instance type {name!r} (known: {known}); "
            "pick one of those, or run `platformctl preflight` against AWS to check it"
        )
    vcpus, memory, count, gpu, gpu_memory = GPU_INSTANCE_TYPES[name]
    return {
        "instanceType": name,
        "defaultVcpus": vcpus,
        "memorySize": memory,
        "gpuses": [{"count": count, "manufacturer": "NVIDIA", "name": gpu, "memorySize": gpu_memory}],
    }
