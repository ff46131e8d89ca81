"""Every tenant namespace can run all its workloads at their largest within its quota and LimitRange.

Admission refuses a pod the moment it would exceed the ResourceQuota or a LimitRange bound, so
a stack that only fits at today's replicas fails later, under load or in the middle of a rollout.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .config import PolicyConfig
from .model import Resource, fmt, quantity, scoped
from .rule import rule
from .workloads import LimitRangeDefaults, Scale, claim_templates, container_resources, hpa_max, pod_resources, scale

# Quota key -> (section, resource) of a pod's effective requests/limits that it bounds.
POD_KEYS = {
    "requests.cpu": ("requests", "cpu"),
    "cpu": ("requests", "cpu"),
    "limits.cpu": ("limits", "cpu"),
    "requests.memory": ("requests", "memory"),
    "memory": ("requests", "memory"),
    "limits.memory": ("limits", "memory"),
    "requests.nvidia.com/gpu": ("requests", "nvidia.com/gpu"),
    "requests.ephemeral-storage": ("requests", "ephemeral-storage"),
    "limits.ephemeral-storage": ("limits", "ephemeral-storage"),
}
# Quota keys a pod must state (after the LimitRange's defaults) or be refused.
MUST_STATE = ("requests.cpu", "limits.cpu", "requests.memory", "limits.memory")
STORAGE_CLASS = ".storageclass.storage.k8s.io/"
# Where a stack sets a container's value, for advice: (section, resource) -> worker setting.
WORKER_FIELDS = {
    ("requests", "cpu"): "cpu",
    ("limits", "cpu"): "cpuLimit",
    ("requests", "memory"): "memory",
    ("limits", "memory"): "memoryLimit",
    ("requests", "nvidia.com/gpu"): "gpus",
    ("limits", "nvidia.com/gpu"): "gpus",
}


@dataclass(frozen=True)
class Demand:
    """One workload's share of a quota key at its largest."""

    workload: Resource
    scale: Scale | None  # None for a standalone PVC
    per_pod: Decimal
    total: Decimal


def _in_namespace(resources: list[Resource], namespace: str) -> list[Resource]:
    return [r for r in resources if r.namespace == namespace]


def _matches_scopes(quota_spec: dict[str, Any], pod: dict[str, Any], requests: dict, limits: dict) -> bool:
    """Whether a scoped quota tracks this pod (scopes and scopeSelector both narrow it)."""
    checks: list[tuple[str, str, list[str]]] = [(scope, "Exists", []) for scope in quota_spec.get("scopes") or []]
    for expr in (quota_spec.get("scopeSelector") or {}).get("matchExpressions") or []:
        checks.append((str(expr.get("scopeName")), str(expr.get("operator", "In")), list(expr.get("values") or [])))
    priority = pod.get("priorityClassName") or ""
    best_effort = not requests and not limits
    for scope, operator, values in checks:
        if scope == "PriorityClass":
            ok = {
                "In": priority in values,
                "NotIn": priority not in values,
                "Exists": bool(priority),
                "DoesNotExist": not priority,
            }.get(operator, True)
        elif scope in ("Terminating", "NotTerminating"):
            ok = (pod.get("activeDeadlineSeconds") is not None) == (scope == "Terminating")
        elif scope in ("BestEffort", "NotBestEffort"):
            ok = best_effort == (scope == "BestEffort")
        elif scope == "CrossNamespacePodAffinity":
            ok = False  # the platform's workloads use no cross-namespace affinity
        else:
            ok = True
        if not ok:
            return False
    return True


def _advice(key: str, parts: list[Demand]) -> str:
    """What to change, starting from the largest demand; never "lower maxReplicas" when it is already 1."""
    biggest = max(parts, key=lambda d: d.total)
    what = biggest.workload.display
    raise_quota = f"raise the tier's quota {key}"
    if key in ("persistentvolumeclaims", "requests.storage") or STORAGE_CLASS in key:
        return f"shrink or drop claims (the largest: {what}, {fmt(biggest.total)}) or {raise_quota}"
    scale_ = biggest.scale
    resource = POD_KEYS.get(key)
    value = ""
    if resource:
        field = WORKER_FIELDS.get(resource)
        value = f"{resource[1]} {resource[0][:-1]}" + (f" (`{field}`)" if field else "")
    together = " (each may fit alone; together they do not)" if len(parts) > 1 else ""
    if scale_ and scale_.autoscaled and scale_.replicas > 1:
        lower = f"lower maxReplicas of {what} ({scale_.replicas})" + (f" or its {value}" if value else "")
        return f"{lower}, or {raise_quota}{together}"
    if scale_ and scale_.surge > 0:
        lower = f"set maxSurge 0 on {what}" + (f" or lower its {value}" if value else "")
        return f"{lower}, or {raise_quota}{together}"
    if value:
        return f"lower the {value} of {what}, which already runs one pod at most, or {raise_quota}{together}"
    return f"move a workload to another namespace or {raise_quota}{together}"


def _demands(inside: list[Resource], autoscalers: dict, quota_spec: dict, is_scoped: bool):
    """Quota key -> the demands on it; plus (workload, message) for pods the quota would refuse outright."""
    demands: dict[str, list[Demand]] = defaultdict(list)
    refusals: list[tuple[Resource, str]] = []
    defaults = LimitRangeDefaults.of([r for r in inside if r.kind == "LimitRange"])
    hard = quota_spec.get("hard") or {}
    for workload in inside:
        pod = workload.pod_spec()
        if pod is None:
            continue
        requests, limits = pod_resources(pod, defaults)
        if is_scoped and not _matches_scopes(quota_spec, pod, requests, limits):
            continue
        size = scale(workload, autoscalers)
        if "pods" in hard:
            demands["pods"].append(Demand(workload, size, Decimal(1), Decimal(size.pods)))
        for key in hard:
            if key not in POD_KEYS:
                continue
            section, name = POD_KEYS[key]
            per_pod = (requests if section == "requests" else limits).get(name)
            if per_pod is None:
                if key in MUST_STATE:
                    refusals.append(
                        (
                            workload,
                            f"{workload.display} has a container without {section}.{name} and the namespace's "
                            f"LimitRange gives no default; the quota's {key} makes Kubernetes refuse its pods",
                        )
                    )
                continue
            demands[key].append(Demand(workload, size, per_pod, per_pod * size.pods))
        if not is_scoped:
            for template in claim_templates(workload):
                _claim(demands, workload, template.get("spec") or {}, size.replicas, size, hard)
    if not is_scoped:
        for claim in (r for r in inside if r.kind == "PersistentVolumeClaim"):
            _claim(demands, claim, claim.props.get("spec") or {}, 1, None, hard)
    return demands, refusals


def _claim(demands, owner: Resource, spec: dict, count: int, size: Scale | None, hard: dict) -> None:
    storage = quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage", 0))
    keys = [("persistentvolumeclaims", Decimal(1)), ("requests.storage", storage)]
    storage_class = spec.get("storageClassName")
    if storage_class:
        prefix = f"{storage_class}{STORAGE_CLASS}"
        keys += [(prefix + "persistentvolumeclaims", Decimal(1)), (prefix + "requests.storage", storage)]
    for key, per_claim in keys:
        if key in hard:
            demands[key].append(Demand(owner, size, per_claim, per_claim * count))


def _describe(demand: Demand, key: str) -> str:
    if demand.scale is None:
        return f"{demand.workload.display} {fmt(demand.total)}"
    if key == "pods":
        return f"{demand.workload.display} {demand.scale.describe()}"
    return f"{demand.workload.display} {demand.scale.describe()} x {fmt(demand.per_pod)} = {fmt(demand.total)}"


@rule(
    name="workloads-fit-quota",
    description=(
        "In each tenant namespace, all workloads at their largest (HPA maxReplicas, else replicas, plus the rolling "
        "update's surge; StatefulSet claims per replica) fit every key of the ResourceQuota: cpu and memory requests "
        "and limits, GPUs, pods, PVCs and storage."
    ),
    level="mandatory",
    severity="high",
)
def workloads_fit_quota(resources: list[Resource], config: PolicyConfig) -> Iterator[tuple[str, str]]:
    autoscalers = hpa_max(resources)
    for namespace, tenant in sorted(config.tenants.items()):
        inside = _in_namespace(resources, namespace)
        reported: set[tuple[str, str]] = set()
        for quota in (r for r in inside if r.kind == "ResourceQuota"):
            spec = quota.props.get("spec") or {}
            demands, refusals = _demands(inside, autoscalers, spec, scoped(quota))
            for workload, message in refusals:
                if (workload.display, message) not in reported:
                    reported.add((workload.display, message))
                    yield workload.display, f"{message} (tenant {tenant!r})"
            for key, raw in sorted((spec.get("hard") or {}).items()):
                parts = demands.get(key) or []
                needed = sum((d.total for d in parts), Decimal(0))
                allowed = quantity(raw)
                if needed <= allowed or not parts:
                    continue
                listing = "; ".join(_describe(d, key) for d in sorted(parts, key=lambda d: -d.total))
                if scoped(quota) and allowed == 0:
                    # A scoped quota of 0 forbids what it selects (e.g. another tier's PriorityClass) outright.
                    advice = f"{quota.display} admits no pods its scope selects: give them the tier's PriorityClass"
                else:
                    advice = _advice(key, parts)
                yield (
                    quota.display,
                    f"namespace {namespace!r} of tenant {tenant!r} needs {key}={fmt(needed)} with every workload at "
                    f"its largest, {fmt(needed - allowed)} above {quota.display} ({key}={fmt(allowed)}): {listing}; "
                    f"{advice}",
                )


def _bounds(limit_range: Resource, kind: str) -> Iterator[tuple[str, dict[str, Decimal], dict[str, Decimal]]]:
    for item in (limit_range.props.get("spec") or {}).get("limits") or []:
        if isinstance(item, dict) and item.get("type") == kind:
            yield (
                kind,
                {k: quantity(v) for k, v in (item.get("max") or {}).items()},
                {k: quantity(v) for k, v in (item.get("min") or {}).items()},
            )


def _over(what: str, values: dict[str, dict[str, Decimal]], limit_range: Resource, kind: str, maximum, minimum):
    """Messages for values above the max or below the min of one LimitRange item."""
    for name, bound in sorted(maximum.items()):
        for section in ("limits", "requests"):
            value = values[section].get(name)
            if value is None:
                if section == "limits":
                    yield (
                        f"{what} states no {name} limit and the LimitRange gives no default, but "
                        f"{limit_range.display} has a {kind} max for {name}: Kubernetes refuses it; set a {name} limit"
                    )
                continue
            if value > bound:
                singular = section[:-1]
                field = WORKER_FIELDS.get((section, name))
                hint = f" (a worker's `{field}`)" if field else ""
                yield (
                    f"{what} has a {name} {singular} of {fmt(value)}, {fmt(value - bound)} above the {kind} max "
                    f"{fmt(bound)} of {limit_range.display}; lower that {singular}{hint} or raise the tier's quota, "
                    "which sets the max"
                )
                break  # the request is at most the limit: one message per resource
    for name, bound in sorted(minimum.items()):
        value = values["requests"].get(name)
        if value is not None and value < bound:
            yield f"{what} requests {name}={fmt(value)}, below the {kind} min {fmt(bound)} of {limit_range.display}"


@rule(
    name="containers-fit-limit-range",
    description=(
        "In each tenant namespace, every container's requests and limits (with the LimitRange's defaults applied) "
        "and every pod's totals fit the LimitRange's max and min; claims fit its PersistentVolumeClaim bounds."
    ),
    level="mandatory",
    severity="high",
)
def containers_fit_limit_range(resources: list[Resource], config: PolicyConfig) -> Iterator[tuple[str, str]]:
    for namespace, tenant in sorted(config.tenants.items()):
        inside = _in_namespace(resources, namespace)
        limit_ranges = [r for r in inside if r.kind == "LimitRange"]
        defaults = LimitRangeDefaults.of(limit_ranges)
        for workload in inside:
            pod = workload.pod_spec()
            messages: list[str] = []
            if pod is not None:
                for limit_range in limit_ranges:
                    for kind, maximum, minimum in _bounds(limit_range, "Container"):
                        for container in (c for key in ("initContainers", "containers") for c in pod.get(key) or []):
                            admitted = container_resources(container, defaults)
                            values = {"requests": admitted.requests, "limits": admitted.limits}
                            what = f"{workload.display} container {admitted.name!r}"
                            messages += _over(what, values, limit_range, kind, maximum, minimum)
                    # A single-container pod over the Pod max is already reported for its container.
                    if messages and len(pod.get("containers") or []) + len(pod.get("initContainers") or []) == 1:
                        continue
                    for kind, maximum, minimum in _bounds(limit_range, "Pod"):
                        requests, limits = pod_resources(pod, defaults)
                        messages += _over(
                            f"{workload.display} (per pod)",
                            {"requests": requests, "limits": limits},
                            limit_range,
                            kind,
                            maximum,
                            minimum,
                        )
            if workload.kind == "PersistentVolumeClaim":
                storage = quantity(
                    (((workload.props.get("spec") or {}).get("resources") or {}).get("requests") or {}).get(
                        "storage", 0
                    )
                )
                for limit_range in limit_ranges:
                    for _kind, maximum, minimum in _bounds(limit_range, "PersistentVolumeClaim"):
                        if "storage" in maximum and storage > maximum["storage"]:
                            messages.append(
                                f"{workload.display} requests storage={fmt(storage)}, above the claim max "
                                f"{fmt(maximum['storage'])} of {limit_range.display}"
                            )
                        if "storage" in minimum and storage < minimum["storage"]:
                            messages.append(
                                f"{workload.display} requests storage={fmt(storage)}, below the claim min "
                                f"{fmt(minimum['storage'])} of {limit_range.display}"
                            )
            for message in messages:
                yield workload.display, f"{message} (tenant {tenant!r})"
