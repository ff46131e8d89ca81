"""What a user checks after `pulumi up`, asked of the real apiserver. Each check returns a list of
problems, each naming the stack's object and quoting the apiserver, scheduler or controller."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.engine import ApplyResult, transitive_dependencies
from e2e.kube import ApiError, Kube
from e2e.releases import CHART_CRDS, VENDOR, chart_name
from infra.config import StackConfig
from infra.preview.capture import HELM_RELEASE, Capture, CapturedResource

WORKLOAD_KINDS = ("Deployment", "StatefulSet")


@dataclass
class Deployed:
    stack: str
    config: StackConfig
    capture: Capture
    kube: Kube
    result: ApplyResult
    controllers: list = field(default_factory=list)  # stand-ins (releases, storage) with reconcile()
    kubeconfig: Path | None = None
    # `platformctl preflight --kubeconfig` as run before the first apply: (exit status, its output).
    preflight: tuple[int, str] | None = None

    def reconcile(self) -> None:
        for controller in self.controllers:
            controller.reconcile()


# -- admission -------------------------------------------------------------------------------
def custom_resources_without_installer(capture: Capture) -> list[str]:
    """Every custom resource must depend on the release that installs its CRD (or have none)."""
    import yaml

    installers: dict[str, list[str]] = {}  # "group/Kind" -> installer URNs
    for release in capture.of_type(HELM_RELEASE):
        for rel in CHART_CRDS.get(chart_name(release.inputs), []):
            for doc in yaml.safe_load_all((VENDOR / rel).read_text()):
                if doc:
                    installers.setdefault(f"{doc['spec']['group']}/{doc['spec']['names']['kind']}", []).append(
                        release.urn
                    )
    closure = transitive_dependencies(capture)
    problems = []
    for r in capture.kubernetes():
        api_version = r.inputs["apiVersion"]
        group = api_version.split("/")[0] if "/" in api_version else ""
        if not group or group in BUILTIN_GROUPS:
            continue
        key = f"{group}/{r.inputs['kind']}"
        found = installers.get(key, [])
        if not found:
            problems.append(f"{name_of(r)}: nothing in the program installs the CRD for {key}")
        elif not set(found) & closure[r.urn]:
            names = ", ".join("Helm release " + urn.split("::")[-1] for urn in found)
            problems.append(f"{name_of(r)}: does not depend on {names}, which installs its CRD")
    return problems


# API groups the apiserver serves itself; any other group is a custom resource's.
BUILTIN_GROUPS = {
    "apps", "batch", "autoscaling", "policy", "rbac.authorization.k8s.io", "networking.k8s.io",
    "storage.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "node.k8s.io",
    "admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io", "authorization.k8s.io",
    "authentication.k8s.io", "certificates.k8s.io", "events.k8s.io", "flowcontrol.apiserver.k8s.io",
    "resource.k8s.io",
}  # fmt: skip


def name_of(resource: CapturedResource) -> str:
    meta = resource.inputs.get("metadata", {})
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{resource.inputs.get('kind', resource.type)} {where}{meta.get('name', resource.name)}"


# -- workloads ---------------------------------------------------------------------------------
def workloads(deployed: Deployed) -> list[dict[str, Any]]:
    applied = {o.resource.urn for o in deployed.result.outcomes if o.status == "applied"}
    return [
        r.inputs for r in deployed.capture.kubernetes() if r.inputs.get("kind") in WORKLOAD_KINDS and r.urn in applied
    ]


def _available(kube: Kube, obj: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    meta = obj["metadata"]
    live = kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    want = live["spec"].get("replicas", 1)
    status = live.get("status", {})
    ok = status.get("availableReplicas", 0) >= want and status.get("updatedReplicas", 0) >= want
    return ok and status.get("observedGeneration", 0) >= live["metadata"]["generation"], live


def wait_available(deployed: Deployed, timeout: float) -> list[str]:
    """Every Deployment/StatefulSet Available within `timeout`; else why, from events."""
    pending = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in workloads(deployed)}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        deployed.reconcile()
        for key, obj in list(pending.items()):
            if _available(deployed.kube, obj)[0]:
                del pending[key]
        if pending:
            time.sleep(1)
    problems = []
    for (kind, namespace, name), obj in sorted(pending.items()):
        live = _available(deployed.kube, obj)[1]
        status = live.get("status", {})
        problems.append(
            f"{kind} {namespace}/{name}: {status.get('availableReplicas', 0)}/{live['spec'].get('replicas', 1)} "
            f"available after {timeout:.0f} s; " + "; ".join(why_not_running(deployed.kube, namespace) or ["no events"])
        )
    return problems


def why_not_running(kube: Kube, namespace: str) -> list[str]:
    """The scheduler's and the controllers' own words for pods that are not there or not running."""
    reasons = []
    for event in kube.list("v1", "Event", namespace):
        if event.get("reason") in ("FailedScheduling", "FailedCreate", "FailedMount", "Failed"):
            involved = event["involvedObject"]
            reasons.append(f"{involved['kind']} {involved.get('name')}: {event['reason']}: {event.get('message', '')}")
    return sorted(set(reasons))


def pods_not_running(deployed: Deployed) -> list[str]:
    problems = []
    for pod in deployed.kube.list("v1", "Pod"):
        phase = pod.get("status", {}).get("phase")
        if phase not in ("Running", "Succeeded"):
            meta = pod["metadata"]
            conditions = {c["type"]: c for c in pod.get("status", {}).get("conditions", [])}
            scheduled = conditions.get("PodScheduled", {})
            problems.append(
                f"Pod {meta['namespace']}/{meta['name']} is {phase}: "
                f"{scheduled.get('reason', '')} {scheduled.get('message', '')}".strip()
            )
    namespaces = {p["metadata"]["namespace"] for p in deployed.kube.list("v1", "Pod")} | {
        r.inputs["metadata"]["name"] for r in deployed.capture.objects("Namespace")
    }
    for namespace in sorted(namespaces):
        try:
            problems.extend(
                f"{namespace}: {line}" for line in why_not_running(deployed.kube, namespace) if "FailedCreate" in line
            )
        except ApiError:
            continue
    return problems


def pod_references_missing(deployed: Deployed) -> list[str]:
    """What the kubelet would refuse to start (kwok does not look): Secrets and ConfigMaps a pod
    mounts or reads into its environment must exist, with the keys it names."""
    kube, problems, cache = deployed.kube, [], {}

    def lookup(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if (kind, namespace, name) not in cache:
            try:
                cache[kind, namespace, name] = kube.get("v1", kind, name, namespace)
            except ApiError:
                cache[kind, namespace, name] = None
        return cache[kind, namespace, name]

    for pod in kube.list("v1", "Pod"):
        meta, spec = pod["metadata"], pod["spec"]
        where = f"Pod {meta['namespace']}/{meta['name']}"
        for volume in spec.get("volumes", []):
            for kind, ref, name_key in (
                ("Secret", volume.get("secret"), "secretName"),
                ("ConfigMap", volume.get("configMap"), "name"),
            ):
                if ref and not ref.get("optional") and lookup(kind, meta["namespace"], ref[name_key]) is None:
                    problems.append(
                        f'{where}: MountVolume.SetUp failed for volume "{volume["name"]}" : {kind.lower()} "{ref[name_key]}" not found'
                    )
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                for kind, ref in (("Secret", source.get("secretKeyRef")), ("ConfigMap", source.get("configMapKeyRef"))):
                    if not ref or ref.get("optional"):
                        continue
                    obj = lookup(kind, meta["namespace"], ref["name"])
                    if obj is None:
                        problems.append(
                            f'{where} container {container["name"]}: CreateContainerConfigError: {kind.lower()} "{ref["name"]}" not found'
                        )
                    elif ref["key"] not in {**obj.get("data", {}), **obj.get("stringData", {})}:
                        problems.append(
                            f"{where} container {container['name']}: CreateContainerConfigError: couldn't find key {ref['key']} in {kind} {meta['namespace']}/{ref['name']}"
                        )
            for source in container.get("envFrom", []):
                for kind, ref in (("Secret", source.get("secretRef")), ("ConfigMap", source.get("configMapRef"))):
                    if ref and not ref.get("optional") and lookup(kind, meta["namespace"], ref["name"]) is None:
                        problems.append(
                            f'{where} container {container["name"]}: CreateContainerConfigError: {kind.lower()} "{ref["name"]}" not found'
                        )
    return sorted(set(problems))


# -- quota at maxReplicas ------------------------------------------------------------------------
def scale_to_max(deployed: Deployed, timeout: float) -> list[str]:
    """Scale every HPA's target to maxReplicas: all replicas must be created, scheduled and Ready,
    and every ResourceQuota's usage stays within `hard`."""
    kube, targets = deployed.kube, []
    for r in deployed.capture.objects("HorizontalPodAutoscaler"):
        spec, namespace = r.inputs["spec"], r.inputs["metadata"]["namespace"]
        ref = spec["scaleTargetRef"]
        target = {
            "apiVersion": ref.get("apiVersion", "apps/v1"),
            "kind": ref["kind"],
            "metadata": {"name": ref["name"], "namespace": namespace},
        }
        try:
            kube.merge_patch(
                target["apiVersion"],
                ref["kind"],
                ref["name"],
                {"spec": {"replicas": int(spec["maxReplicas"])}},
                namespace,
            )
            targets.append(target)
        except ApiError as error:
            return [
                f"{ref['kind']} {namespace}/{ref['name']}: scaling to maxReplicas {spec['maxReplicas']} refused: {error.message}"
            ]
    problems = []
    deadline = time.monotonic() + timeout
    waiting = list(targets)
    while waiting and time.monotonic() < deadline:
        deployed.reconcile()
        waiting = [t for t in waiting if not _available(kube, t)[0]]
        if waiting:
            time.sleep(1)
    for t in waiting:
        meta = t["metadata"]
        live = _available(kube, t)[1]
        problems.append(
            f"{t['kind']} {meta['namespace']}/{meta['name']} at maxReplicas {live['spec']['replicas']}: "
            f"{live.get('status', {}).get('availableReplicas', 0)} available; "
            + "; ".join(why_not_running(kube, meta["namespace"]) or ["no events"])
        )
    problems.extend(quota_over_hard(kube))
    return problems


def quota_over_hard(kube: Kube) -> list[str]:
    from infra.quantity import parse_quantity

    problems = []
    for quota in kube.list("v1", "ResourceQuota"):
        hard, used = quota.get("status", {}).get("hard", {}), quota.get("status", {}).get("used", {})
        for resource, limit in hard.items():
            if resource in used and parse_quantity(used[resource]) > parse_quantity(limit):
                meta = quota["metadata"]
                problems.append(
                    f"ResourceQuota {meta['namespace']}/{meta['name']}: {resource} used {used[resource]} > hard {limit}"
                )
    return problems


# -- RBAC -----------------------------------------------------------------------------------------
FORBIDDEN_EDITS = [
    ("", "resourcequotas"),
    ("", "limitranges"),
    ("networking.k8s.io", "networkpolicies"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("rbac.authorization.k8s.io", "roles"),
]


def subjects(deployed: Deployed):
    """(tenant, role, description, user, groups) for every configured user and group."""
    for tenant in deployed.config.tenants:
        for role in ("admin", "user", "viewer"):
            for user in getattr(tenant.users, role):
                yield tenant, role, f"user {user}", user, []
            for group in getattr(tenant.groups, role):
                yield tenant, role, f"group {group}", f"e2e-member-of-{group}", [group]


def rbac(deployed: Deployed) -> list[str]:
    kube, problems = deployed.kube, []
    tenants = deployed.config.tenants
    for tenant, role, who, user, groups in subjects(deployed):
        label = f"{who} ({role} of {tenant.name})"
        for namespace in tenant.namespaces:
            # Without this the negative checks below would pass on a cluster with no bindings at all.
            if not kube.can_i(user, groups, "list", "pods", namespace):
                problems.append(f"{label} cannot list pods in its own namespace {namespace}")
            if role == "viewer":
                for verb in ("get", "list", "watch"):
                    if kube.can_i(user, groups, verb, "secrets", namespace):
                        problems.append(f"{label} can {verb} secrets in {namespace}")
            for group, resource in FORBIDDEN_EDITS:
                for verb in ("create", "update", "patch", "delete"):
                    if kube.can_i(user, groups, verb, resource, namespace, group):
                        problems.append(f"{label} can {verb} {resource} in {namespace}")
        for other in tenants:
            if other.name == tenant.name:
                continue
            for namespace in other.namespaces:
                for verb, resource, group in (
                    ("get", "pods", ""),
                    ("list", "secrets", ""),
                    ("create", "deployments", "apps"),
                ):
                    if kube.can_i(user, groups, verb, resource, namespace, group):
                        problems.append(f"{label} can {verb} {resource} in {other.name}'s namespace {namespace}")
    return problems


PRIVILEGED_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "e2e-privileged-probe"},
    "spec": {
        "containers": [
            {
                "name": "probe",
                "image": "registry.k8s.io/pause:3.10",
                "securityContext": {"privileged": True},
                "resources": {
                    "limits": {"cpu": "100m", "memory": "64Mi"},
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                },
            }
        ]
    },
}


def pod_security(deployed: Deployed) -> list[str]:
    """A privileged pod, created as each tenant's admin, must be refused by Pod Security."""
    problems = []
    for tenant in deployed.config.tenants:
        admins = [(u, []) for u in tenant.users.admin] + [(f"e2e-member-of-{g}", [g]) for g in tenant.groups.admin]
        if not admins:
            continue
        user, groups = admins[0]
        as_admin = deployed.kube.as_user(user, groups)
        try:
            for namespace in tenant.namespaces:
                pod = {**PRIVILEGED_POD, "metadata": {**PRIVILEGED_POD["metadata"], "namespace": namespace}}
                try:
                    as_admin.create(pod)
                except ApiError as error:
                    if "PodSecurity" not in error.message:
                        problems.append(
                            f"Pod {namespace}/probe as {user} {groups}: refused, but not by Pod Security: {error.message}"
                        )
                    continue
                deployed.kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}")
                problems.append(
                    f"Pod {namespace}/probe: a privileged pod created as {tenant.name}'s admin {user} was admitted"
                )
        finally:
            as_admin.close()
    return problems
