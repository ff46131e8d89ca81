"""GpuNodePool: where GPU pods may run, and how many GPUs there are.

Three modes, chosen by the stack:
- fake (minikube, kind): label (and taint) existing nodes and install run-ai's fake-gpu-operator,
  so `nvidia.com/gpu` is schedulable and quota-able without hardware;
- onprem: label and taint existing GPU nodes and install the NVIDIA device plugin, optionally
  time-slicing each GPU into several schedulable ones;
- eks: add a managed GPU node group to an existing EKS cluster (GPUs per node read from the
  instance type) and install the NVIDIA device plugin.

Everything GPU-bound elsewhere (workers, DCGM exporter, the policies' capacity) reads this
component's outputs: `node_selector`, `toleration`, `gpu_capacity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import labels
from components.helm import FAKE_GPU_OPERATOR, NVIDIA_DEVICE_PLUGIN, release
from infra.config import GpuPoolSettings, PlatformNamespaces
from policies.platform_rules.contract import FAKE_POOL_LABEL, GPUS_PER_NODE_ANNOTATION

# pulumi-kubernetes' annotation naming the server-side-apply field manager of a Patch resource.
PATCH_FIELD_MANAGER = "pulumi.com/patchFieldManager"
EKS_TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}
EKS_WORKER_POLICIES = [
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
]


@dataclass(frozen=True)
class GpuNodePoolArgs:
    mode: str
    pool: GpuPoolSettings
    namespaces: PlatformNamespaces


def toleration(pool: GpuPoolSettings) -> dict[str, str]:
    return {"key": pool.taint.key, "operator": "Equal", "value": pool.taint.value, "effect": pool.taint.effect}


def node_selector(pool: GpuPoolSettings) -> dict[str, str]:
    return {pool.label.key: pool.label.value}


def fake_operator_values(pool: GpuPoolSettings) -> dict[str, Any]:
    fake = pool.fake
    return {
        "topology": {
            "nodePoolLabelKey": FAKE_POOL_LABEL,
            "nodePools": {
                fake.pool: {
                    "gpuProduct": fake.gpu_product,
                    "gpuCount": fake.gpus_per_node,
                    "gpuMemory": fake.gpu_memory_mib,
                }
            },
        },
        # No MIG on the simulated pool: the mig-faker would only wait for a label nobody sets.
        "migFaker": {"enabled": False},
    }


def device_plugin_values(pool: GpuPoolSettings) -> dict[str, Any]:
    # The chart's default affinity requires node-feature-discovery's labels (or nvidia.com/gpu.present),
    # which nothing here sets: with it the DaemonSet schedules on zero nodes and Helm still reports success.
    # The pool's own label is what every GPU node is known to carry.
    pool_affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": pool.label.key, "operator": "In", "values": [pool.label.value]}]}
                ]
            }
        }
    }
    values: dict[str, Any] = {
        "nodeSelector": node_selector(pool),
        "affinity": pool_affinity,
        "tolerations": [toleration(pool), {"key": "CriticalAddonsOnly", "operator": "Exists"}],
    }
    if pool.time_slicing:
        sharing = {
            "version": "v1",
            "sharing": {
                "timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": pool.time_slicing.replicas}]}
            },
        }
        values["config"] = {"map": {"default": yaml.safe_dump(sharing, sort_keys=False)}, "default": "default"}
    return values


class GpuNodePool(pulumi.ComponentResource):
    node_selector: dict[str, str]
    toleration: dict[str, str]
    gpu_capacity: pulumi.Output[int]
    gpus_per_node: pulumi.Output[int]
    # What GPU pods must wait for: the release that makes nvidia.com/gpu schedulable (and the EKS node group).
    ready: list[pulumi.Resource]
    # The GPU operator namespace: the pool's DaemonSets and the GPU exporters live there.
    operator_namespace: k8s.core.v1.Namespace

    def __init__(self, name: str, args: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:gpu:GpuNodePool", name, None, opts)
        pool = args.pool
        self._pool = pool
        self.node_selector = node_selector(pool)
        self.toleration = toleration(pool)
        self.ready = []
        # The device plugin and the fake operator mount host paths and run privileged: the namespace says so
        # (Pod Security admission would otherwise apply the cluster's default level to them).
        self.operator_namespace = k8s.core.v1.Namespace(
            args.namespaces.gpu_operator,
            metadata={
                "name": args.namespaces.gpu_operator,
                "labels": {
                    **labels.recommended("gpu-pool", "gpu-operator"),
                    "pod-security.kubernetes.io/enforce": "privileged",
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        if args.mode not in BUILDERS:
            raise ValueError(f"unknown GPU pool mode {args.mode!r}")
        per_node, nodes = BUILDERS[args.mode](self, args)
        self.gpus_per_node = per_node
        # What the pool can offer at its largest: the denominator of the 30% rule for GPUs.
        self.gpu_capacity = pulumi.Output.all(per_node, nodes).apply(lambda v: int(v[0]) * int(v[1]))
        self.register_outputs(
            {
                "nodeSelector": self.node_selector,
                "toleration": self.toleration,
                "gpusPerNode": self.gpus_per_node,
                "gpuCapacity": self.gpu_capacity,
            }
        )

    # -- one builder per pool mode (infra/config/pool_modes.py has the mode's config side) --------------

    def _fake(self, args: GpuNodePoolArgs) -> tuple[pulumi.Output[int], pulumi.Output[int]]:
        pool = self._pool
        nodes_patched = self._label_nodes(extra_labels={FAKE_POOL_LABEL: pool.fake.pool})
        self.ready.append(
            release(
                "fake-gpu-operator",
                FAKE_GPU_OPERATOR,
                fake_operator_values(pool),
                args.namespaces.gpu_operator,
                pulumi.ResourceOptions(parent=self, depends_on=[self.operator_namespace, *nodes_patched]),
            )
        )
        per_node = pulumi.Output.from_input(pool.gpus_per_node or pool.fake.gpus_per_node)
        return per_node, pulumi.Output.from_input(len(pool.nodes))

    def _onprem(self, args: GpuNodePoolArgs) -> tuple[pulumi.Output[int], pulumi.Output[int]]:
        pool = self._pool
        # The physical count, recorded where the policy pack bounds the pool's capacity by it.
        nodes_patched = self._label_nodes(annotations={GPUS_PER_NODE_ANNOTATION: str(pool.gpus_per_node)})
        self.ready.append(
            release(
                "nvidia-device-plugin",
                NVIDIA_DEVICE_PLUGIN,
                device_plugin_values(pool),
                args.namespaces.gpu_operator,
                pulumi.ResourceOptions(parent=self, depends_on=[self.operator_namespace, *nodes_patched]),
            )
        )
        replicas = pool.time_slicing.replicas if pool.time_slicing else 1
        return pulumi.Output.from_input(pool.gpus_per_node * replicas), pulumi.Output.from_input(len(pool.nodes))

    def _eks(self, args: GpuNodePoolArgs) -> tuple[pulumi.Output[int], pulumi.Output[int]]:
        pool = self._pool
        per_node, node_group = self._eks_node_group()
        self.ready.append(node_group)
        self.ready.append(
            release(
                "nvidia-device-plugin",
                NVIDIA_DEVICE_PLUGIN,
                device_plugin_values(pool),
                args.namespaces.gpu_operator,
                pulumi.ResourceOptions(parent=self, depends_on=[self.operator_namespace]),
            )
        )
        return per_node, pulumi.Output.from_input(pool.eks.max_size)

    def _label_nodes(
        self, extra_labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
    ) -> list[pulumi.Resource]:
        pool = self._pool
        patches = []
        for node in pool.nodes:
            spec = {"taints": [{"key": pool.taint.key, "value": pool.taint.value, "effect": pool.taint.effect}]}
            patches.append(
                k8s.core.v1.NodePatch(
                    f"gpu-node-{node}",
                    metadata={
                        "name": node,
                        "labels": {**node_selector(pool), **(extra_labels or {})},
                        # A field manager of its own and no force: server-side apply never silently takes over
                        # taints another manager (kubeadm, an operator, `kubectl taint`) owns; it reports a
                        # conflict instead, and deleting this patch removes only what this manager set.
                        "annotations": {PATCH_FIELD_MANAGER: "gpu-platform-pool", **(annotations or {})},
                    },
                    spec=spec if pool.taint_nodes else None,
                    opts=pulumi.ResourceOptions(parent=self, retain_on_delete=False),
                )
            )
        return patches

    def _eks_node_group(self) -> tuple[pulumi.Output[int], pulumi.Resource]:
        import pulumi_aws as aws  # only EKS stacks pay for importing the AWS SDK

        pool, eks = self._pool, self._pool.eks
        child = pulumi.ResourceOptions(parent=self)
        instance = aws.ec2.get_instance_type_output(
            instance_type=eks.instance_type, opts=pulumi.InvokeOptions(parent=self)
        )
        per_node = instance.gpuses.apply(lambda gpus: sum(int(g.count) for g in gpus) if gpus else 0)

        role = aws.iam.Role(
            "gpu-node-role",
            assume_role_policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
            tags={"app.kubernetes.io/part-of": labels.PART_OF},
            opts=child,
        )
        # Nodes that join before their role may pull images and attach to the VPC never become Ready.
        attachments = [
            aws.iam.RolePolicyAttachment(f"gpu-node-policy-{index}", role=role.name, policy_arn=policy_arn, opts=child)
            for index, policy_arn in enumerate(EKS_WORKER_POLICIES)
        ]

        autoscaler_tags = per_node.apply(
            lambda gpus: {
                "k8s.io/cluster-autoscaler/enabled": "true",
                f"k8s.io/cluster-autoscaler/{eks.cluster_name}": "owned",
                f"k8s.io/cluster-autoscaler/node-template/label/{pool.label.key}": pool.label.value,
                f"k8s.io/cluster-autoscaler/node-template/taint/{pool.taint.key}": f"{pool.taint.value}:{pool.taint.effect}",
                "k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu": str(gpus),
                "app.kubernetes.io/part-of": labels.PART_OF,
            }
        )
        node_group = aws.eks.NodeGroup(
            "gpu-node-group",
            cluster_name=eks.cluster_name,
            node_role_arn=role.arn,
            subnet_ids=eks.subnet_ids,
            instance_types=[eks.instance_type],
            ami_type=eks.ami_type,
            capacity_type="ON_DEMAND",
            disk_size=eks.disk_size_gib,
            scaling_config={"min_size": eks.min_size, "max_size": eks.max_size, "desired_size": eks.desired_size},
            labels=node_selector(pool),
            taints=[{"key": pool.taint.key, "value": pool.taint.value, "effect": EKS_TAINT_EFFECTS[pool.taint.effect]}],
            tags=autoscaler_tags,
            # The cluster autoscaler owns the node count once the group exists.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=attachments, ignore_changes=["scalingConfig.desiredSize"]
            ),
        )
        return per_node, node_group


# What each pool mode creates; the keys are infra.config.pool_modes.POOL_MODES' keys.
BUILDERS = {"fake": GpuNodePool._fake, "onprem": GpuNodePool._onprem, "eks": GpuNodePool._eks}
