"""Apply a captured program to the cluster in the order the Pulumi engine would.

The engine starts a resource as soon as everything it depends on has been created: its custom
parent, its `depends_on`, and every resource whose outputs its inputs consume (recorded by the
capture from the SDK's RegisterResource requests). So does this: each resource starts, in a
thread pool, the moment its last dependency is done. Its wave (0 without dependencies, else one
after its latest dependency) is reported. Like pulumi-kubernetes, a create that fails because
its namespace or its kind (CRD) does not exist yet is retried for about 30 s.

Deviations from the engine, each on purpose:
- A Helm release's stand-in is instant, so a custom resource racing its CRD's installer usually
  wins here as it may in reality; the test that every custom resource depends on its installer
  makes that defect deterministic.
- Readiness (Deployments Available, ...) is checked after the apply, not between waves.
- The real engine starts nothing new after the first failure; here every resource whose
  dependencies succeeded is still tried, so one run reports every defect. Resources whose
  dependencies failed are reported as skipped.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from e2e.kube import ApiError, Kube, NoKind
from e2e.releases import Releases
from infra.preview.capture import HELM_RELEASE, SECRET_SIG, Capture, CapturedResource

FIELD_MANAGER = "pulumi-kubernetes"
# pulumi-kubernetes retries a create that fails for a missing namespace or kind (5 tries, backoff).
CREATE_RETRY_S = float(os.environ.get("E2E_CREATE_RETRY_S", "30"))
PATCH_FORCE = "pulumi.com/patchForce"


def wire_to_object(value: Any) -> Any:
    """Wire-form inputs as the object the provider sends: secrets unwrapped, whole floats as ints."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return wire_to_object(value.get("value"))
        return {key: wire_to_object(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [wire_to_object(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def describe(resource: CapturedResource) -> str:
    meta = resource.inputs.get("metadata") if isinstance(resource.inputs.get("metadata"), dict) else {}
    if resource.inputs.get("kind"):
        where = f"{meta['namespace']}/" if meta.get("namespace") else ""
        return f"{resource.inputs['kind']} {where}{meta.get('name', resource.name)} ({resource.type} {resource.name})"
    return f"{resource.type} {resource.name}"


@dataclass
class Outcome:
    resource: CapturedResource
    wave: int
    status: str  # applied | failed | skipped | noop
    message: str = ""


@dataclass
class ApplyResult:
    stack: str
    outcomes: list[Outcome] = field(default_factory=list)

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def skipped(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "skipped"]

    def report(self) -> str:
        lines = [f"stack {self.stack}: {len(self.failed())} failed, {len(self.skipped())} skipped"]
        for o in self.failed() + self.skipped():
            lines.append(f"  [{o.status}, wave {o.wave}] {describe(o.resource)}: {o.message}")
        return "\n".join(lines)


def waves(capture: Capture) -> dict[str, int]:
    """Each resource's wave: 0 without dependencies, else one after its latest dependency."""
    by_urn = {r.urn: r for r in capture.resources}
    memo: dict[str, int] = {}

    def wave(urn: str) -> int:
        if urn not in memo:
            memo[urn] = 0  # a cycle cannot be registered; this only guards recursion
            memo[urn] = max((wave(d) + 1 for d in dependencies(by_urn[urn], by_urn)), default=0)
        return memo[urn]

    return {r.urn: wave(r.urn) for r in capture.resources}


def dependencies(resource: CapturedResource, by_urn: dict[str, CapturedResource]) -> list[str]:
    deps = [d for d in resource.dependencies if d in by_urn]
    # A component parent is registered at once; a custom parent must exist first.
    parent = by_urn.get(resource.parent)
    if parent is not None and parent.custom:
        deps.append(parent.urn)
    return deps


def transitive_dependencies(capture: Capture) -> dict[str, set[str]]:
    by_urn = {r.urn: r for r in capture.resources}
    memo: dict[str, set[str]] = {}

    def closure(urn: str) -> set[str]:
        if urn not in memo:
            memo[urn] = set()
            found: set[str] = set()
            for dep in dependencies(by_urn[urn], by_urn):
                found |= {dep} | closure(dep)
            memo[urn] = found
        return memo[urn]

    return {r.urn: closure(r.urn) for r in capture.resources}


class Engine:
    def __init__(self, stack: str, kube: Kube, releases: Releases, controllers: list, skip_types: tuple[str, ...] = ()):
        self.stack, self.kube, self.releases, self.skip_types = stack, kube, releases, skip_types
        self.controllers = controllers  # stand-ins with reconcile(): the releases' controllers, storage

    def apply(self, capture: Capture) -> ApplyResult:
        result = ApplyResult(self.stack)
        wave_of = waves(capture)
        by_urn = {r.urn: r for r in capture.resources}
        deps = {r.urn: set(dependencies(r, by_urn)) for r in capture.resources}
        dependents: dict[str, list[str]] = {urn: [] for urn in by_urn}
        for urn, ds in deps.items():
            for d in ds:
                dependents[d].append(urn)
        waiting = {urn: len(ds) for urn, ds in deps.items()}
        status: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=16) as pool:
            running: dict[Future, CapturedResource] = {}

            def start(urn: str) -> None:
                resource = by_urn[urn]
                bad = [d for d in deps[urn] if status[d] in ("failed", "skipped")]
                if bad:
                    finish(
                        Outcome(
                            resource,
                            wave_of[urn],
                            "skipped",
                            "depends on " + ", ".join(describe(by_urn[d]) for d in bad),
                        )
                    )
                else:
                    running[pool.submit(self._apply_one, resource, wave_of[urn])] = resource

            def finish(outcome: Outcome) -> None:
                urn = outcome.resource.urn
                status[urn] = outcome.status
                result.outcomes.append(outcome)
                for d in dependents[urn]:
                    waiting[d] -= 1
                    if waiting[d] == 0:
                        start(d)

            for urn in [u for u, n in waiting.items() if n == 0]:
                start(urn)
            while running:
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    del running[future]
                    finish(future.result())
                # Stand-in controllers (the fake GPU operator, the device plugin, storage) react.
                for controller in self.controllers:
                    controller.reconcile()
        return result

    def _apply_one(self, resource: CapturedResource, wave: int) -> Outcome:
        try:
            if not resource.custom or resource.type.startswith(("random:", "pulumi:providers:")):
                return Outcome(resource, wave, "noop")
            if resource.type.startswith(self.skip_types):
                return Outcome(resource, wave, "noop", "left out of the e2e tier")
            if resource.type == HELM_RELEASE:
                self.releases.install(wire_to_object(resource.inputs))
                return Outcome(resource, wave, "applied")
            if resource.is_kubernetes:
                self._apply_object(resource)
                return Outcome(resource, wave, "applied")
            return Outcome(resource, wave, "failed", "the e2e tier does not know how to create this type")
        except ApiError as error:
            return Outcome(resource, wave, "failed", error.message)
        except Exception as error:  # a harness bug must not hide the other resources' outcomes
            return Outcome(resource, wave, "failed", f"e2e harness error: {error!r}")

    def _apply_object(self, resource: CapturedResource) -> None:
        deadline, tries = time.monotonic() + CREATE_RETRY_S, 0
        while True:
            tries += 1
            try:
                return self._apply_object_once(resource)
            except ApiError as error:
                retryable = (
                    isinstance(error, NoKind)
                    or "does not exist" in error.message
                    or (error.status == 404 and "namespaces" in error.message)
                )
                if not retryable or time.monotonic() > deadline:
                    if retryable:
                        raise ApiError(error.status, f"after {tries} tries: {error.message}") from None
                    raise
                time.sleep(2)

    def _apply_object_once(self, resource: CapturedResource) -> None:
        obj = wire_to_object(resource.inputs)
        meta = obj.get("metadata", {})
        api_version, kind, name, namespace = obj["apiVersion"], obj["kind"], meta.get("name"), meta.get("namespace")
        try:
            self.kube.resource(api_version, kind)
        except NoKind as error:
            raise ApiError(
                404,
                f"creation failed because the Kubernetes API server reported that the apiVersion for this "
                f"resource does not exist. Verify that any required CRDs have been created: {error.message}",
            ) from None
        if resource.type.endswith("Patch"):
            # Patch resources change an object someone else created; the provider refuses a missing one.
            if not self.kube.exists(api_version, kind, name, namespace):
                raise ApiError(404, f'{kind} "{name}" to patch does not exist')
            annotations = meta.get("annotations", {})
            force = str(annotations.get(PATCH_FORCE, "false")).lower() == "true"
            self.kube.apply(obj, field_manager=f"{FIELD_MANAGER}-patch", force=force)
            return
        # pulumi-kubernetes creates with a plain create (client-side, since pulumi-kubernetes#4278:
        # an object that already exists fails with AlreadyExists instead of being silently
        # adopted) and updates with server-side apply. The apply right after the create is what
        # the next `pulumi up` sends; it must be admitted too (SSA also rejects duplicate list keys).
        self.kube.create(obj, field_manager=FIELD_MANAGER)
        try:
            self.kube.apply(obj, field_manager=FIELD_MANAGER)
        except ApiError as error:
            raise ApiError(
                error.status, f"created, but the next update's server-side apply fails: {error.message}"
            ) from None
