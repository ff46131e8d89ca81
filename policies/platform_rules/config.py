"""The pack's configuration, and the settings every rule gets once it is resolved against a stack.

Who owns what:
- the thresholds (`maxTenantShare`, `overSubscriptionRatio`) belong to whoever runs the pack: its
  configuration, with the defaults below. The stack's capacity record may only tighten them;
- the cluster's size is declared by the stack (its capacity record) or by the pack's configuration,
  and the GPU count measured against is never more than what the stack's GPU pool provides;
- where the GPU pool is (taint, node label) is the stack's to say: it describes its own cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from . import contract
from .gpu_pool import pool_gpus
from .model import Resource, fmt, mapping, tenant_namespaces
from .quantity import parse_quantity

# The cluster dimensions the 30% rule measures, as the capacity record and the pack name them.
DIMENSIONS = ("cpu", "memory", "gpu")
PACK = "the policy pack"


@dataclass(frozen=True)
class PackConfig:
    """The configuration of whoever runs the pack; the defaults live here (only the CLI fills schema defaults)."""

    max_tenant_share: float = 0.30
    over_subscription_ratio: float = 1.0
    gpu_taint_key: str = contract.GPU_RESOURCE
    gpu_pool_label: str = "platform.io/pool=gpu"
    # A ceiling on the cluster's size, and the size itself where the stack has no capacity record.
    capacity: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> PackConfig:
        values = dict(values or {})
        return cls(
            max_tenant_share=float(values.get("maxTenantShare", cls.max_tenant_share)),
            over_subscription_ratio=float(values.get("overSubscriptionRatio", cls.over_subscription_ratio)),
            gpu_taint_key=str(values.get("gpuTaintKey", cls.gpu_taint_key)),
            gpu_pool_label=str(values.get("gpuPoolLabel", cls.gpu_pool_label)),
            capacity={k: str(v) for k, v in (values.get("capacity") or {}).items()},
        )


@dataclass(frozen=True)
class Threshold:
    """A threshold and who set it, so a violation can say whom to ask."""

    name: str
    value: float
    owner: str  # PACK, or the capacity record that tightened it

    def describe(self, as_percent: bool = False) -> str:
        shown = f"{self.value:.0%}" if as_percent else f"{self.value:g}"
        return f"{self.name} {shown}, set by {self.owner}"


@dataclass(frozen=True)
class CapacityDimension:
    """One dimension of the cluster: what is declared, what the pool provides, what the pack measures against."""

    key: str
    declared: Decimal | None
    declared_by: str
    provided: Decimal | None = None  # GPUs only: what the GPU pool's resources provide
    provided_by: str = ""

    @property
    def amount(self) -> Decimal | None:
        known = [v for v in (self.declared, self.provided) if v is not None]
        return min(known) if known else None

    def describe(self) -> str:
        if self.amount is None:
            return f"no {self.key} capacity"
        parts = []
        if self.declared is not None:
            parts.append(f"declared {fmt(self.declared)} by {self.declared_by}")
        if self.provided is not None:
            parts.append(f"{fmt(self.provided)} provided by {self.provided_by}")
        return f"{fmt(self.amount)} ({'; '.join(parts)})"


@dataclass(frozen=True)
class PolicyConfig:
    """Everything a rule needs to know about the stack, resolved once by the framework."""

    max_tenant_share: Threshold = Threshold("maxTenantShare", PackConfig.max_tenant_share, PACK)
    over_subscription_ratio: Threshold = Threshold("overSubscriptionRatio", PackConfig.over_subscription_ratio, PACK)
    gpu_taint_key: str = PackConfig.gpu_taint_key
    gpu_pool_label: str = PackConfig.gpu_pool_label
    capacity: dict[str, CapacityDimension] = field(default_factory=dict)
    tenants: dict[str, str] = field(default_factory=dict)  # namespace -> tenant
    # (resource, message): a capacity record or GPU pool the pack cannot read is a violation.
    problems: tuple[tuple[str, str], ...] = ()

    @property
    def pool_label(self) -> tuple[str, str]:
        key, _, value = self.gpu_pool_label.partition("=")
        return key, value

    @classmethod
    def resolve(cls, pack: PackConfig, resources: list[Resource]) -> PolicyConfig:
        tenants = tenant_namespaces(resources)
        problems: list[tuple[str, str]] = []
        records = capacity_records(resources, tenants)
        share = Threshold("maxTenantShare", pack.max_tenant_share, PACK)
        ratio = Threshold("overSubscriptionRatio", pack.over_subscription_ratio, PACK)
        taint, label = pack.gpu_taint_key, pack.gpu_pool_label
        declared: dict[str, tuple[Decimal, str]] = {}
        for key in DIMENSIONS:
            if key in pack.capacity:
                try:
                    declared[key] = (parse_quantity(pack.capacity[key]), f"{PACK}'s capacity.{key}")
                except ValueError as exc:
                    problems.append((PACK, f"the policy pack's capacity.{key}: {exc}"))
        for record in records:
            data = mapping(record.props.get("data"))
            share = _tighten(share, data, record, problems)
            ratio = _tighten(ratio, data, record, problems)
            if data.get("gpuTaint"):
                taint = str(data["gpuTaint"]).split("=", 1)[0].split(":", 1)[0]
            if data.get("gpuPoolLabel"):
                label = str(data["gpuPoolLabel"])
            for key in DIMENSIONS:
                if key not in data:
                    continue
                try:
                    amount = parse_quantity(data[key])
                except ValueError as exc:
                    problems.append((record.display, f"{record.display} (the capacity record) key {key!r}: {exc}"))
                    continue
                if amount < 0:
                    problems.append(
                        (record.display, f"{record.display} declares a negative {key} capacity {data[key]!r}")
                    )
                    continue
                # The smallest statement wins: the pack's capacity is a ceiling, and of two records the tighter.
                if key not in declared or amount < declared[key][0]:
                    declared[key] = (amount, f"the stack's capacity record {record.display}")
        capacity = {
            key: CapacityDimension(key, *declared[key]) if key in declared else CapacityDimension(key, None, "")
            for key in DIMENSIONS
        }
        pool = pool_gpus(resources, label.partition("=")[0])
        problems.extend(pool.problems)
        gpu = capacity["gpu"]
        provided, provided_by = pool.gpus, pool.source
        if provided is None and "gpu" not in pack.capacity:
            # Nothing in the stack advertises GPUs; only the pack's runner may vouch for them.
            provided, provided_by = (
                Decimal(0),
                "no GPU pool (no GPU operator or device plugin release, no GPU node group)",
            )
        capacity["gpu"] = CapacityDimension("gpu", gpu.declared, gpu.declared_by, provided, provided_by)
        return cls(share, ratio, taint, label, capacity, tenants, tuple(problems))


def capacity_records(resources: list[Resource], tenants: dict[str, str]) -> list[Resource]:
    """The platform's capacity ConfigMaps, by label; one in a tenant namespace is not the platform's."""
    return [
        r
        for r in resources
        if r.kind == "ConfigMap"
        and r.type.startswith("kubernetes:")
        and mapping(r.metadata.get("labels")).get(contract.CAPACITY_LABEL) == contract.CAPACITY_LABEL_VALUE
        and r.namespace not in tenants
    ]


def _tighten(current: Threshold, data: dict[str, Any], record: Resource, problems: list) -> Threshold:
    """The record's value where it is stricter than `current`; a looser one is ignored, a bad one reported."""
    if current.name not in data:
        return current
    raw = data[current.name]
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        problems.append(
            (record.display, f"{record.display} sets {current.name}={raw!r}, not a positive number; it is ignored")
        )
        return current
    if value < current.value:
        return Threshold(
            current.name, value, f"the stack's capacity record {record.display} (the pack allows {current.value:g})"
        )
    return current
