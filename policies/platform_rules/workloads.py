"""What a namespace's workloads can demand at their largest: pods, per-pod resources, claims.

Kubernetes admits each pod against the quota as it is created, so a quota that fits today's
replicas but not the HPA's maximum, or not the extra pod a rolling update starts, refuses pods
exactly when they are needed. These helpers give the pack the worst case the scheduler can see.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .model import Resource, quantity

# Scalable kinds; each pod template counts once per replica.
SCALABLE = ("Deployment", "StatefulSet", "ReplicaSet")
DEFAULT_SURGE = "25%"


@dataclass(frozen=True)
class Scale:
    replicas: int  # at the largest: the HPA's maxReplicas where one targets the workload
    surge: int  # extra pods during a rolling update
    autoscaled: bool

    @property
    def pods(self) -> int:
        return self.replicas + self.surge

    def describe(self) -> str:
        source = f"maxReplicas {self.replicas}" if self.autoscaled else f"replicas {self.replicas}"
        return f"{self.pods} pod{'s' if self.pods != 1 else ''} ({source} + surge {self.surge})"


@dataclass(frozen=True)
class LimitRangeDefaults:
    """A namespace's LimitRange Container defaults (what a container without a value gets)."""

    default: dict[str, Decimal] = field(default_factory=dict)
    default_request: dict[str, Decimal] = field(default_factory=dict)

    @classmethod
    def of(cls, limit_ranges: list[Resource]) -> LimitRangeDefaults:
        default: dict[str, Decimal] = {}
        request: dict[str, Decimal] = {}
        for limit_range in limit_ranges:
            for item in (limit_range.props.get("spec") or {}).get("limits") or []:
                if isinstance(item, dict) and item.get("type") == "Container":
                    default.update({k: quantity(v) for k, v in (item.get("default") or {}).items()})
                    request.update({k: quantity(v) for k, v in (item.get("defaultRequest") or {}).items()})
        # A LimitRange with a default but no defaultRequest uses the default for both.
        return cls(default, {**default, **request})


def hpa_max(resources: list[Resource]) -> dict[tuple[str, str, str], int]:
    """(namespace, kind, name) of a scale target -> the largest maxReplicas of the HPAs aiming at it."""
    found: dict[tuple[str, str, str], int] = {}
    for hpa in (r for r in resources if r.kind == "HorizontalPodAutoscaler"):
        spec = hpa.props.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        key = (hpa.namespace or "", str(ref.get("kind")), str(ref.get("name")))
        found[key] = max(found.get(key, 0), int(quantity(spec.get("maxReplicas", 1))))
    return found


def surge(spec: dict[str, Any], replicas: int) -> int:
    """Extra pods a Deployment's rolling update may start: maxSurge, 25% by default, percentages rounded up."""
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0
    raw = (strategy.get("rollingUpdate") or {}).get("maxSurge", DEFAULT_SURGE)
    if isinstance(raw, str) and raw.strip().endswith("%"):
        try:
            return math.ceil(replicas * float(raw.strip()[:-1]) / 100)
        except ValueError:
            return math.ceil(replicas * 0.25)
    return int(quantity(raw))


def scale(resource: Resource, autoscalers: dict[tuple[str, str, str], int]) -> Scale:
    spec = resource.props.get("spec") or {}
    kind = resource.kind
    if kind in SCALABLE:
        key = (resource.namespace or "", kind, str(resource.metadata.get("name")))
        autoscaled = key in autoscalers
        declared = int(quantity(spec.get("replicas", 1)))
        replicas = max(autoscalers[key], declared) if autoscaled else declared
        return Scale(replicas, surge(spec, replicas) if kind == "Deployment" else 0, autoscaled)
    if kind == "Job":
        return Scale(int(quantity(spec.get("parallelism", 1))), 0, False)
    if kind == "CronJob":
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        return Scale(int(quantity(job.get("parallelism", 1))), 0, False)
    return Scale(1, 0, False)  # a Pod; a DaemonSet counts once (the pack cannot know the node count)


@dataclass(frozen=True)
class ContainerResources:
    name: str
    requests: dict[str, Decimal]
    limits: dict[str, Decimal]
    defaulted: frozenset[str]  # "limits.cpu" etc. that came from the LimitRange's defaults


def container_resources(container: dict[str, Any], defaults: LimitRangeDefaults) -> ContainerResources:
    """A container's requests and limits as admitted: API defaulting, then the LimitRange's defaults."""
    resources = container.get("resources") or {}
    limits = {k: quantity(v) for k, v in (resources.get("limits") or {}).items()}
    requests = {k: quantity(v) for k, v in (resources.get("requests") or {}).items()}
    defaulted = set()
    # The API server sets a missing request to the limit before admission; the LimitRange fills the rest.
    for name, value in limits.items():
        requests.setdefault(name, value)
    for name, value in defaults.default.items():
        if name not in limits:
            limits[name] = value
            defaulted.add(f"limits.{name}")
    for name, value in defaults.default_request.items():
        if name not in requests:
            requests[name] = value
            defaulted.add(f"requests.{name}")
    return ContainerResources(str(container.get("name")), requests, limits, frozenset(defaulted))


def pod_resources(pod: dict[str, Any], defaults: LimitRangeDefaults) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """A pod's effective requests and limits: app containers summed, or the largest init container if larger."""
    app = [container_resources(c, defaults) for c in pod.get("containers") or [] if isinstance(c, dict)]
    init = [container_resources(c, defaults) for c in pod.get("initContainers") or [] if isinstance(c, dict)]
    totals: list[dict[str, Decimal]] = []
    for section in ("requests", "limits"):
        summed: dict[str, Decimal] = {}
        for c in app:
            for name, value in getattr(c, section).items():
                summed[name] = summed.get(name, Decimal(0)) + value
        for c in init:
            for name, value in getattr(c, section).items():
                summed[name] = max(summed.get(name, Decimal(0)), value)
        totals.append(summed)
    return totals[0], totals[1]


def claim_templates(resource: Resource) -> Iterator[dict[str, Any]]:
    """A StatefulSet's volumeClaimTemplates: each replica gets one claim per template."""
    if resource.kind == "StatefulSet":
        for template in (resource.props.get("spec") or {}).get("volumeClaimTemplates") or []:
            if isinstance(template, dict):
                yield template
