"""Running the Pulumi program under the SDK's mock runtime and capturing every resource.

The mock runtime is how Pulumi documents unit testing; here it also drives the offline
preview. The program reads its configuration from the runtime exactly as under `pulumi up`.
"""

from __future__ import annotations

import asyncio
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from infra.config import PROJECT
from infra.stack_file import to_pulumi_config
from policies.platform_rules.contract import TENANT_LABEL

SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's wire marker for secret values
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
_ALPHANUMERIC = string.ascii_letters + string.digits


@dataclass
class CapturedResource:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    component: str = ""  # "type name" of the nearest enclosing component
    tenant: str = ""
    # URNs the engine waits for before creating this resource: `depends_on` and every resource
    # whose outputs its inputs consume (what the SDK sends as dependencies/propertyDependencies).
    dependencies: list[str] = field(default_factory=list)

    @property
    def is_kubernetes(self) -> bool:
        return self.custom and self.type.startswith("kubernetes:") and "apiVersion" in self.inputs


@dataclass
class Capture:
    resources: list[CapturedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: list[str] = field(default_factory=list)

    def of_type(self, type_token: str) -> list[CapturedResource]:
        return [r for r in self.resources if r.type == type_token]

    def kubernetes(self) -> list[CapturedResource]:
        return [r for r in self.resources if r.is_kubernetes]

    def objects(self, kind: str, namespace: str | None = None) -> list[CapturedResource]:
        """The Kubernetes objects of `kind`, in the order the program made them; with `namespace`, only its own."""
        return [
            r
            for r in self.kubernetes()
            if r.inputs.get("kind") == kind
            and (namespace is None or r.inputs.get("metadata", {}).get("namespace") == namespace)
        ]

    def find(self, kind: str, name: str, namespace: str | None = None) -> CapturedResource:
        """The object of `kind` named `name` in `namespace` (None: a cluster-scoped object); KeyError if none."""
        for resource in self.kubernetes():
            meta = resource.inputs.get("metadata", {})
            if resource.inputs.get("kind") == kind and meta.get("name") == name and meta.get("namespace") == namespace:
                return resource
        raise KeyError(f"no {kind} {namespace + '/' if namespace else ''}{name} captured")

    def releases(self) -> dict[str, CapturedResource]:
        """The Helm releases, by release name."""
        return {r.inputs["name"]: r for r in self.of_type(HELM_RELEASE)}


class PlatformMocks(pulumi.runtime.Mocks):
    """Returns what providers would: generated values for pulumi-random, names for Kubernetes objects."""

    def __init__(self, calls: dict[str, Callable[[dict], dict]] | None = None):
        from infra.instance_types import get_instance_type_result

        self.calls = {"aws:ec2/getInstanceType:getInstanceType": get_instance_type_result, **(calls or {})}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        if args.typ in ("random:index/randomPassword:RandomPassword", "random:index/randomString:RandomString"):
            length = int(state.get("length", 32))
            state["result"] = "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))
        if args.typ.startswith("aws:"):
            state.setdefault("arn", f"arn:aws:mock::000000000000:{args.name}")
            state.setdefault("name", args.name)
        metadata = state.get("metadata")
        if isinstance(metadata, dict):
            name = metadata.get("name") or f"{args.name}-{secrets.token_hex(4)}"
            state["metadata"] = {**metadata, "name": name}
            namespace = metadata.get("namespace")
            return (f"{namespace}/{name}" if isinstance(namespace, str) else name), state
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        handler = self.calls.get(args.token)
        if handler is None:
            raise NotImplementedError(f"the offline preview has no mock for {args.token}")
        return handler(args.args)


class CapturingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, remembering each registration's parent and dependencies."""

    def __init__(self, mocks: pulumi.runtime.Mocks, capture: Capture):
        super().__init__(mocks)
        self.capture = capture

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = self.resources[response.urn].state if response.urn in self.resources else {}
            dependencies = list(request.dependencies)
            for property_dependencies in request.propertyDependencies.values():
                dependencies.extend(property_dependencies.urns)
            self.capture.resources.append(
                CapturedResource(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    custom=bool(request.custom),
                    inputs=inputs,
                    dependencies=sorted(set(dependencies)),
                )
            )
        return response


def run_under_mocks(
    program: Callable[[], Any],
    *,
    stack: str,
    config: dict[str, Any],
    mocks: pulumi.runtime.Mocks | None = None,
) -> Capture:
    """Run `program` with the stack's raw config (`gpu-platform:key` → value) and capture what it creates."""
    capture = Capture()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        pulumi.runtime.reset_options(project=PROJECT, stack=stack)
        set_all_config(to_pulumi_config(config))
        mocks = mocks or PlatformMocks()
        # preview=False: with preview=True the mock runtime leaves outputs unknown and skips apply().
        pulumi.runtime.set_mocks(
            mocks, project=PROJECT, stack=stack, preview=False, monitor=CapturingMonitor(mocks, capture)
        )
        from pulumi.runtime.settings import ROOT

        root = ROOT.get()

        async def run() -> None:
            program()
            # Stack exports; secret ones (API keys) are recorded by name only, never by value.
            for name, value in dict(root.outputs).items():
                output = pulumi.Output.from_input(value)
                if await output.is_secret():
                    capture.secret_outputs.append(name)
                else:
                    capture.outputs[name] = await output.future()

        _sync_await(run_pulumi_func(run))
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    _attribute(capture)
    return capture


def _attribute(capture: Capture) -> None:
    by_urn = {resource.urn: resource for resource in capture.resources}
    namespace_tenants = {
        r.inputs["metadata"]["name"]: r.inputs["metadata"].get("labels", {}).get(TENANT_LABEL, "")
        for r in capture.objects("Namespace")
    }
    for resource in capture.resources:
        parent = by_urn.get(resource.parent)
        while parent is not None and parent.custom:
            parent = by_urn.get(parent.parent)
        if parent is not None:
            resource.component = f"{parent.type} {parent.name}"
        meta = resource.inputs.get("metadata") if isinstance(resource.inputs.get("metadata"), dict) else {}
        if resource.inputs.get("kind") == "Namespace":
            resource.tenant = namespace_tenants.get(meta.get("name"), "")
        elif isinstance(meta.get("namespace"), str):
            resource.tenant = namespace_tenants.get(meta["namespace"], "")
        if not resource.tenant and parent is not None and parent.type == "platform:tenant:TenantStack":
            resource.tenant = parent.name
