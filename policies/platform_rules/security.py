"""Workload security and secrets hygiene."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .model import PolicyConfig, Resource, containers, tenant_namespaces

SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|passw(or)?d|credential)", re.I)
SECRET_VALUE = re.compile(r"^(sk-[A-Za-z0-9_-]{16,}|Bearer\s+\S{16,}|hf_[A-Za-z0-9]{20,})$")


def _image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    return ":" in name and not name.endswith(":latest")


def workload_problems(resource: Resource) -> Iterator[str]:
    pod = resource.pod_spec()
    if pod is None:
        return
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            yield f"{resource.display} sets {field}"
    for volume in pod.get("volumes") or []:
        if isinstance(volume, dict) and "hostPath" in volume:
            yield f"{resource.display} mounts hostPath volume {volume.get('name')!r}"
    pod_non_root = (pod.get("securityContext") or {}).get("runAsNonRoot") is True
    for container in containers(pod):
        name = container.get("name")
        context: dict[str, Any] = container.get("securityContext") or {}
        if context.get("privileged"):
            yield f"{resource.display} container {name!r} is privileged"
        if context.get("allowPrivilegeEscalation") is not False:
            yield f"{resource.display} container {name!r} does not set allowPrivilegeEscalation: false"
        if not (pod_non_root or context.get("runAsNonRoot") is True):
            yield f"{resource.display} container {name!r} may run as root (set runAsNonRoot: true)"
        resources = container.get("resources") or {}
        for section in ("requests", "limits"):
            missing = [r for r in ("cpu", "memory") if r not in (resources.get(section) or {})]
            if missing:
                yield f"{resource.display} container {name!r} has no {section} for {', '.join(missing)}"
        image = str(container.get("image", ""))
        if not _image_pinned(image):
            yield f"{resource.display} container {name!r} image {image!r} is not pinned (use a tag other than latest, or a digest)"


def workload_security(resources: list[Resource], config: PolicyConfig) -> Iterator[tuple[str, str]]:
    """Mandatory inside tenant namespaces."""
    tenants = tenant_namespaces(resources)
    for resource in resources:
        if resource.namespace in tenants:
            for problem in workload_problems(resource):
                yield resource.display, f"{problem} (tenant {tenants[resource.namespace]!r})"


def workload_security_platform(resources: list[Resource], config: PolicyConfig) -> Iterator[tuple[str, str]]:
    """The same checks, advisory, for the platform's own namespaces."""
    tenants = tenant_namespaces(resources)
    for resource in resources:
        if resource.namespace not in tenants:
            for problem in workload_problems(resource):
                yield resource.display, problem


def secrets_hygiene(resource: Resource, config: PolicyConfig) -> Iterator[str]:
    if resource.kind == "ConfigMap":
        for key, value in (resource.props.get("data") or {}).items():
            if SECRET_NAME.search(str(key)) or SECRET_VALUE.match(str(value).strip()):
                yield f"{resource.display} holds {key!r}, which looks like a credential; keep it in a Secret"
    pod = resource.pod_spec()
    for container in containers(pod) if pod else []:
        for env in container.get("env") or []:
            if (
                isinstance(env, dict)
                and "value" in env
                and (
                    SECRET_NAME.search(str(env.get("name", "")))
                    or SECRET_VALUE.match(str(env.get("value", "")).strip())
                )
            ):
                yield (
                    f"{resource.display} container {container.get('name')!r} sets {env.get('name')!r} as a plain value; "
                    "use valueFrom.secretKeyRef"
                )
