"""What the rules see: resources in Pulumi's wire form, violations, and small readers of both."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from .contract import TENANT_LABEL
from .quantity import parse_quantity

Level = Literal["mandatory", "advisory"]
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
        return mapping(self.props.get("metadata"))

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


def mapping(value: Any) -> dict[str, Any]:
    """`value` where it is a mapping, else empty: a field of the wrong shape reads as absent."""
    return value if isinstance(value, dict) else {}


def quantity(value: Any) -> Decimal:
    """A quantity from wire-form props; unknown or malformed values count as zero."""
    try:
        return parse_quantity(value)
    except (ValueError, TypeError):
        return Decimal(0)


def fmt(value: Decimal) -> str:
    """A quantity for a message: plain below 1Mi, else in Gi."""
    try:
        if abs(value) < 2**20:
            return f"{value.normalize():f}"
        return f"{(value / 2**30).quantize(Decimal('0.01')).normalize():f}Gi"
    except ArithmeticError:  # beyond what a quantity can mean: show it as written
        return str(value)


def scoped(quota: Resource) -> bool:
    """A quota with `scopes` or a `scopeSelector` (e.g. by PriorityClass) tracks only the pods it selects."""
    spec = mapping(quota.props.get("spec"))
    return bool(spec.get("scopeSelector") or spec.get("scopes"))


def tenant_namespaces(resources: list[Resource]) -> dict[str, str]:
    """Namespace name -> tenant, from the platform's namespace labels."""
    found = {}
    for resource in resources:
        if resource.kind == "Namespace":
            tenant = mapping(resource.metadata.get("labels")).get(TENANT_LABEL)
            name = resource.metadata.get("name")
            if isinstance(tenant, str) and tenant and isinstance(name, str):
                found[name] = tenant
    return found


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for key in ("initContainers", "containers") for c in (pod.get(key) or []) if isinstance(c, dict)]
