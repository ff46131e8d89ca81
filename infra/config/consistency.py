"""Checks that span several keys of a stack: names the program builds from two values, who
owns which namespace, which models a tenant's workers serve, and the gateway's own parser.

Each check yields `key.path: what is wrong and what to change` lines, all of them at once, so
an operator fixes a stack file in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from infra.config.base import MAX_LABEL_VALUE, kubernetes_namespace

if TYPE_CHECKING:
    from infra.config.stack import StackConfig


class StackProblems(ValueError):
    """Several problems of one stack; pydantic carries the exception to `infra.stack_file`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def stack_problems(config: StackConfig) -> list[str]:
    return [
        *platform_namespace_problems(config),
        *gpu_node_problems(config),
        *tenant_namespace_problems(config),
        *joined_name_problems(config),
        *unserved_model_problems(config),
        *gateway_document_problems(config),
    ]


def platform_namespace_problems(config: StackConfig) -> Iterator[str]:
    # Network policies admit "the gateway namespace" and "the monitoring namespace": two roles
    # sharing one namespace would silently widen what each admits.
    seen: dict[str, str] = {}
    for field, namespace in config.platform.namespaces:
        key = f"platform.namespaces.{_camel(field)}"
        if namespace in seen:
            yield f"{key}: {namespace!r} is already {seen[namespace]}; every platform namespace needs its own name"
        else:
            seen[namespace] = key


def gpu_node_problems(config: StackConfig) -> Iterator[str]:
    first: dict[str, int] = {}
    for index, node in enumerate(config.gpu_pool.nodes):
        if node in first:
            yield f"gpuPool.nodes[{index}]: {node!r} is listed twice (first at gpuPool.nodes[{first[node]}]); list each node once"
        first.setdefault(node, index)


def tenant_namespace_problems(config: StackConfig) -> Iterator[str]:
    reserved = {namespace: f"platform.namespaces.{_camel(field)}" for field, namespace in config.platform.namespaces}
    if config.gateway.enabled and config.gateway.exposure == "gateway-api":
        reserved.setdefault(config.gateway.parent_gateway.namespace, "gateway.parentGateway.namespace")
    owners: dict[str, str] = {}
    for index, tenant in enumerate(config.tenants):
        for env_index, environment in enumerate(tenant.environments):
            namespace = tenant.namespace(environment)
            key = f"tenants[{index}].name" if environment == "prod" else f"tenants[{index}].environments[{env_index}]"
            what = f"namespace {namespace!r} of tenant {tenant.name!r}"
            system = kubernetes_namespace(namespace)
            if system:
                yield f"{key}: {what}: {system}; rename the tenant or the environment"
            elif namespace in reserved:
                yield f"{key}: {what} is the platform's ({reserved[namespace]}); rename the tenant or the environment"
            elif namespace in owners:
                yield f"{key}: {what} collides with {owners[namespace]}; rename one of them"
            else:
                owners[namespace] = f"tenant {tenant.name!r} ({key})"


def joined_name_problems(config: StackConfig) -> Iterator[str]:
    """Label values built from two config values must still fit Kubernetes' 63 characters."""
    for index, tenant in enumerate(config.tenants):
        for worker_index, worker in enumerate(tenant.workers):
            instance = f"{tenant.name}-{worker.name}"
            if len(instance) > MAX_LABEL_VALUE:
                yield (
                    f"tenants[{index}].workers[{worker_index}].name: the worker's app.kubernetes.io/instance label "
                    f"{instance!r} (tenants[{index}].name + '-' + tenants[{index}].workers[{worker_index}].name) has "
                    f"{len(instance)} characters, more than {MAX_LABEL_VALUE}; shorten the tenant or the worker name"
                )


def unserved_model_problems(config: StackConfig) -> Iterator[str]:
    for index, tenant in enumerate(config.tenants):
        served = {worker.served_name for worker in tenant.workers}
        for model_index, model in enumerate(tenant.models):
            if model not in served:
                yield (
                    f"tenants[{index}].models[{model_index}]: tenant {tenant.name!r} may call {model!r}, but none of "
                    f"its workers serves it (served: {sorted(served) or 'none'}), so every call would fail; add a "
                    "worker with that model (or servedModelName), or remove it from models"
                )


def gateway_document_problems(config: StackConfig) -> Iterator[str]:
    """The gateway's own parser reads what GatewayStack would write, tenant by tenant."""
    if not config.gateway.enabled:
        return
    from pydantic import ValidationError

    from infra.config.engines import ENGINES
    from infra.gateway_document import gateway_document
    from services.gateway import config as gateway

    # Placeholders of the shape the program's outputs have: hashes and upstream URLs are generated.
    hashes = {t.name: {key: "0" * 64 for key in t.api_keys} for t in config.tenants}
    upstreams = {
        t.name: {
            w.name: f"http://{w.name}.{t.namespace(w.environment)}.svc.cluster.local:{ENGINES[w.engine].port}"
            for w in t.workers
        }
        for t in config.tenants
    }
    document = gateway_document(config, hashes, upstreams)
    for index, tenant in enumerate(config.tenants):
        try:
            gateway.validate(
                gateway.Document.model_validate({"tenants": {tenant.name: document["tenants"][tenant.name]}})
            )
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(part) for part in error["loc"][2:])
                yield (
                    f"tenants[{index}]: the gateway would refuse the configuration of tenant {tenant.name!r} "
                    f"({where}: {error['msg']}); fix the tenant's gateway limits, tier or routes"
                )
        except gateway.DocumentError as exc:
            yield f"tenants[{index}]: the gateway would refuse the configuration of tenant {tenant.name!r} ({exc})"


def _camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)
