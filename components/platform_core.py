"""PlatformCore: the cluster-wide pieces every tenant shares.

The platform's system namespace, the capacity ConfigMap (the policy pack measures tenant
shares against it, so `pulumi preview --policy-pack` and the offline check agree on the
denominator), one PriorityClass per tier in use, and the three tenant roles.

The tenant roles are ClusterRoles that TenantStack binds per namespace with RoleBindings, the
pattern of Kubernetes' own admin/edit/view roles: a RoleBinding grants them inside its
namespace only, and one definition instead of three Roles per namespace keeps large stacks
fast to preview and deploy (see bench/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import labels
from components.tenant import API_KEY_SECRET
from components.tenant_rbac import ROLES, role_rules
from infra.config import GpuPoolSettings, PlatformSettings, Tier
from infra.quantity import format_bytes, format_cpu
from policies.platform_rules.contract import CAPACITY_CONFIGMAP, CAPACITY_LABEL_VALUE

# The platform's own pods (gateway, Redis, Prometheus, the metrics adapter) outrank every tenant tier, so a
# gold worker that preempts to fit never evicts what every tenant depends on. The highest value Kubernetes
# allows outside its own system-* classes; tier priorities must stay below it.
PLATFORM_CRITICAL = "platform-critical"
PLATFORM_CRITICAL_VALUE = 1_000_000_000


@dataclass(frozen=True)
class PlatformCoreArgs:
    platform: PlatformSettings
    gpu_pool: GpuPoolSettings
    tiers: dict[str, Tier]
    # The GPU pool's own count when it knows it (EKS reads it from the instance type).
    gpu_capacity: pulumi.Input[int] | None = None


def priority_class_name(tier: str) -> str:
    return f"platform-{tier}"


def capacity_data(platform: PlatformSettings, gpu_pool: GpuPoolSettings, gpus: int | None = None) -> dict[str, str]:
    return {
        "cpu": format_cpu(platform.capacity.cpu),
        "memory": format_bytes(platform.capacity.memory),
        "gpu": str(platform.capacity.gpu if gpus is None else gpus),
        "maxTenantShare": str(platform.max_tenant_share),
        "overSubscriptionRatio": str(platform.over_subscription_ratio),
        "gpuPoolLabel": str(gpu_pool.label),
        "gpuTaint": str(gpu_pool.taint),
    }


def role_name(role: str) -> str:
    return f"platform-tenant-{role}"


class PlatformCore(pulumi.ComponentResource):
    system_namespace: str
    priority_classes: dict[str, str]
    # PriorityClass resources by class name, for pods that must wait for theirs (tiers and platform-critical).
    priority_class_resources: dict[str, pulumi.Resource]
    role_names: dict[str, str]

    def __init__(self, name: str, args: PlatformCoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:core:PlatformCore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.system_namespace = args.platform.namespaces.system
        ns = k8s.core.v1.Namespace(
            self.system_namespace,
            metadata={"name": self.system_namespace, "labels": labels.recommended("platform", "system")},
            opts=child,
        )
        k8s.core.v1.ConfigMap(
            "platform-capacity",
            metadata={
                "name": CAPACITY_CONFIGMAP,
                "namespace": self.system_namespace,
                "labels": {**labels.recommended("platform", "capacity"), labels.CAPACITY: CAPACITY_LABEL_VALUE},
            },
            data=pulumi.Output.from_input(args.gpu_capacity).apply(
                lambda gpus: capacity_data(args.platform, args.gpu_pool, self._reconcile_gpus(args.platform, gpus))
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]),
        )
        self.priority_classes = {}
        self.priority_class_resources = {
            PLATFORM_CRITICAL: k8s.scheduling.v1.PriorityClass(
                PLATFORM_CRITICAL,
                metadata={"name": PLATFORM_CRITICAL, "labels": labels.recommended("platform", "scheduling")},
                value=PLATFORM_CRITICAL_VALUE,
                global_default=False,
                preemption_policy="PreemptLowerPriority",
                description="The platform's shared services: gateway, Redis, Prometheus, metrics adapter",
                opts=child,
            )
        }
        for tier_name, tier in sorted(args.tiers.items()):
            class_name = priority_class_name(tier_name)
            self.priority_class_resources[class_name] = k8s.scheduling.v1.PriorityClass(
                class_name,
                metadata={
                    "name": class_name,
                    "labels": {**labels.recommended("platform", "scheduling"), labels.TIER: tier_name},
                },
                value=tier.priority,
                global_default=False,
                preemption_policy=tier.preemption,
                description=f"Pods of {tier_name}-tier tenants",
                opts=child,
            )
            self.priority_classes[tier_name] = class_name
        self.role_names = {}
        for role in ROLES:
            name = role_name(role)
            k8s.rbac.v1.ClusterRole(
                name,
                metadata={"name": name, "labels": labels.recommended("platform", "tenancy")},
                rules=role_rules(role, API_KEY_SECRET),
                opts=child,
            )
            self.role_names[role] = name
        self.register_outputs(
            {
                "systemNamespace": self.system_namespace,
                "priorityClasses": self.priority_classes,
                "roleNames": self.role_names,
            }
        )

    @staticmethod
    def _reconcile_gpus(platform: PlatformSettings, pool_gpus: int | None) -> int:
        declared = platform.capacity.gpu
        if pool_gpus is None:
            return declared
        if pool_gpus != declared:
            pulumi.log.warn(
                f"platform.capacity.nvidia.com/gpu is {declared} but the GPU pool provides {pool_gpus}; "
                "quota shares are measured against the pool's count"
            )
        return int(pool_gpus)
