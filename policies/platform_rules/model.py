"""What the rules see: resources in Pulumi's wire form, violations, and the pack's configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from .quantity import parse_quantity

Level = Literal["mandatory", "advisory"]
TENANT_LABEL = "platform.io/tenant"
CAPACITY_CONFIGMAP = ("platform-system", "platform-capacity")
# Pod templates: kind -> path from the object to its PodSpec.
POD_TEMPLATES = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


@dataclass(frozen=True)
class Resource:
    """One resource: its Pulumi type token, logical name, URN and inputs (camelCase wire form)."""

    type: str
    name: str
    urn: str
    props: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.props.get("kind") or self.type.rsplit(":", 1)[-1]

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.props.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def namespace(self) -> str | None:
        value = self.metadata.get("namespace")
        return value if isinstance(value, str) else None

    @property
    def display(self) -> str:
        name = self.metadata.get("name") or self.name
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{name}"

    def pod_spec(self) -> dict[str, Any] | None:
        path = POD_TEMPLATES.get(self.kind)
        if not path or not self.type.startswith("kubernetes:"):
            return None
        node: Any = self.props
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else None


@dataclass(frozen=True)
class Violation:
    policy: str
    level: Level
    resource: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"policy": self.policy, "level": self.level, "resource": self.resource, "message": self.message}


@dataclass
class PolicyConfig:
    """Pack configuration; the defaults live here because only the CLI applies schema defaults."""

    max_tenant_share: float = 0.30
    over_subscription_ratio: float = 1.0
    gpu_taint_key: str = "nvidia.com/gpu"
    gpu_pool_label: str = "platform.io/pool=gpu"
    # Used only when the stack has no capacity ConfigMap.
    capacity: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> PolicyConfig:
        values = dict(values or {})
        return cls(
            max_tenant_share=float(values.get("maxTenantShare", cls.max_tenant_share)),
            over_subscription_ratio=float(values.get("overSubscriptionRatio", cls.over_subscription_ratio)),
            gpu_taint_key=str(values.get("gpuTaintKey", cls.gpu_taint_key)),
            gpu_pool_label=str(values.get("gpuPoolLabel", cls.gpu_pool_label)),
            capacity={k: str(v) for k, v in (values.get("capacity") or {}).items()},
        )

    def with_stack(self, resources: list[Resource]) -> PolicyConfig:
        """The stack's capacity ConfigMap, written by the platform, overrides the pack's configuration."""
        for resource in resources:
            if (
                resource.kind == "ConfigMap"
                and (resource.namespace, resource.metadata.get("name")) == CAPACITY_CONFIGMAP
            ):
                data = resource.props.get("data") or {}
                return PolicyConfig(
                    max_tenant_share=float(data.get("maxTenantShare", self.max_tenant_share)),
                    over_subscription_ratio=float(data.get("overSubscriptionRatio", self.over_subscription_ratio)),
                    gpu_taint_key=str(data.get("gpuTaint", self.gpu_taint_key)).split("=", 1)[0].split(":", 1)[0],
                    gpu_pool_label=str(data.get("gpuPoolLabel", self.gpu_pool_label)),
                    capacity={key: str(data[key]) for key in ("cpu", "memory", "gpu") if key in data} or self.capacity,
                )
        return self

    @property
    def pool_label(self) -> tuple[str, str]:
        key, _, value = self.gpu_pool_label.partition("=")
        return key, value


def quantity(value: Any) -> Decimal:
    """A quantity from wire-form props; unknown or malformed values count as zero (reported elsewhere)."""
    try:
        return parse_quantity(value)
    except (ValueError, TypeError):
        return Decimal(0)


def tenant_namespaces(resources: list[Resource]) -> dict[str, str]:
    """Namespace name -> tenant, from the platform's namespace labels."""
    found = {}
    for resource in resources:
        if resource.kind == "Namespace":
            tenant = (resource.metadata.get("labels") or {}).get(TENANT_LABEL)
            name = resource.metadata.get("name")
            if tenant and isinstance(name, str):
                found[name] = tenant
    return found


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for key in ("initContainers", "containers") for c in (pod.get(key) or []) if isinstance(c, dict)]


def pod_requests(pod: dict[str, Any]) -> dict[str, Decimal]:
    """Per-pod requests (sum over app containers; a resource with only a limit requests its limit)."""
    totals: dict[str, Decimal] = {}
    for container in pod.get("containers") or []:
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        for name in set(requests) | set(limits):
            totals[name] = totals.get(name, Decimal(0)) + quantity(requests.get(name, limits.get(name)))
    return totals
