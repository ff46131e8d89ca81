"""`platformctl preflight --kubeconfig`: ask the cluster whether the stack's first `pulumi up` can succeed.

What the program assumes of a cluster it does not create: the nodes the stack names exist, a
StorageClass for its claims, the Gateway API CRDs or the IngressClass its exposure needs. Each
problem names the stack key to change.
"""

from __future__ import annotations

from infra.config import StackConfig
from infra.kube_client import Cluster, get

DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
GATEWAY_API_CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/httproutes.gateway.networking.k8s.io"


def cluster_problems(config: StackConfig, cluster: Cluster) -> list[str]:
    platform, pool, gateway = config.platform, config.gpu_pool, config.gateway
    nodes = sorted(set(platform.nodes) | set(pool.nodes))
    paths = [f"/api/v1/nodes/{name}" for name in nodes]
    paths += ["/apis/storage.k8s.io/v1/storageclasses"]
    if gateway.enabled and gateway.exposure == "gateway-api" and not gateway.gateway_api.install_crds:
        paths.append(GATEWAY_API_CRD)
    if gateway.enabled and gateway.exposure == "ingress":
        paths.append(f"/apis/networking.k8s.io/v1/ingressclasses/{gateway.ingress_class_name}")
    found = get(cluster, paths)

    problems = []
    for name in nodes:
        if found[f"/api/v1/nodes/{name}"] is None:
            key = "gpuPool.nodes" if name in pool.nodes else "platform.nodes"
            problems.append(f"{key}: the cluster has no node {name!r} (kubectl get nodes)")
    classes = (found["/apis/storage.k8s.io/v1/storageclasses"] or {}).get("items") or []
    names = {c["metadata"]["name"] for c in classes}
    defaults = [
        c["metadata"]["name"] for c in classes if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true"
    ]
    wanted = {
        "platform.storageClass": platform.storage_class,
        "gateway.redis.storageClass": gateway.redis.storage_class,
        "monitoring.storage.storageClass": config.monitoring.storage.storage_class,
    }
    for tenant in config.tenants:
        for index, worker in enumerate(tenant.workers):
            if worker.cache and worker.cache.storage_class:
                wanted[f"tenants[{tenant.name}].workers[{index}].cache.storageClass"] = worker.cache.storage_class
    for key, name in wanted.items():
        if name and name not in names:
            problems.append(
                f"{key}: the cluster has no StorageClass {name!r} (it has: {', '.join(sorted(names)) or 'none'})"
            )
    if not platform.storage_class and not defaults:
        problems.append(
            "platform.storageClass: the cluster has no default StorageClass, so Redis' and Prometheus' claims "
            f"would stay Pending; name one of {', '.join(sorted(names)) or '(none: install a provisioner first)'}"
        )
    if GATEWAY_API_CRD in found and found[GATEWAY_API_CRD] is None:
        problems.append(
            "gateway.exposure: gateway-api, but the cluster has no Gateway API CRDs; install them with its Gateway "
            "controller, or set gateway.gatewayApi.installCrds: true"
        )
    ingress = f"/apis/networking.k8s.io/v1/ingressclasses/{gateway.ingress_class_name}"
    if ingress in found and found[ingress] is None:
        problems.append(
            f"gateway.ingressClassName: the cluster has no IngressClass {gateway.ingress_class_name!r} "
            "(on minikube: `minikube addons enable ingress`)"
        )
    return problems
