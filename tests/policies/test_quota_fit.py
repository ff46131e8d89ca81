"""Every tenant namespace fits all its workloads at their largest, and every container fits the LimitRange."""

from __future__ import annotations

import pytest

from policies.platform_rules import evaluate
from tests.policies.conftest import gpu_deployment, hpa, k8s, without

CPU_ONLY = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}


def fit(resources):
    return [v for v in evaluate(resources) if v.policy == "workloads-fit-quota"]


def limit_range(resources):
    return [v for v in evaluate(resources) if v.policy == "containers-fit-limit-range"]


def container(deployment):
    return deployment.props["spec"]["template"]["spec"]["containers"][0]


def test_two_workers_that_fit_alone_but_not_together(healthy):
    # Each worker asks 1 GPU of the namespace's 1: alone each fits, together they need 2.
    second = gpu_deployment("acme", name="second")
    assert fit(healthy) == []
    [violation] = fit(healthy + [second])
    assert violation.resource == "ResourceQuota acme/tenant-quota"
    assert "needs requests.nvidia.com/gpu=2" in violation.message and "1 above" in violation.message
    assert "Deployment acme/worker 1 pod (maxReplicas 1 + surge 0) x 1 = 1" in violation.message
    assert "Deployment acme/second 1 pod (replicas 1 + surge 0) x 1 = 1" in violation.message
    assert "each may fit alone; together they do not" in violation.message
    # maxReplicas is already 1: the advice is to lower the request or raise the quota, not maxReplicas.
    assert "maxReplicas of" not in violation.message
    assert "lower the nvidia.com/gpu request (`gpus`) of Deployment acme/" in violation.message
    assert "raise the tier's quota requests.nvidia.com/gpu" in violation.message


@pytest.mark.parametrize(
    ("key", "per_pod"),
    [
        ("requests.cpu", {"requests": {"cpu": "3"}, "limits": {"cpu": "3"}}),
        ("limits.cpu", {"requests": {"cpu": "1"}, "limits": {"cpu": "5"}}),
        ("requests.memory", {"requests": {"memory": "5Gi"}, "limits": {"memory": "5Gi"}}),
        ("limits.memory", {"requests": {"memory": "1Gi"}, "limits": {"memory": "9Gi"}}),
    ],
)
def test_every_compute_key_is_checked_at_max_replicas(healthy, key, per_pod):
    # Two pods at maxReplicas 2: quota is 4 / 8 cores and 8Gi / 16Gi.
    resources = {
        "requests": {"cpu": "1", "memory": "1Gi", **per_pod["requests"]},
        "limits": {"cpu": "1", "memory": "1Gi", **per_pod["limits"]},
    }
    web = gpu_deployment("globex", name="web", gpus=0, tolerate=False, select=False, resources=resources)
    web.props["spec"]["strategy"] = {"type": "Recreate"}
    messages = [v.message for v in fit(healthy + [web, hpa("globex", "web", 2.0)])]
    assert [m for m in messages if f"needs {key}=" in m], messages
    assert all("lower maxReplicas of Deployment globex/web (2)" in m for m in messages)


def test_rolling_update_surge_defaults_to_25_percent_rounded_up(healthy):
    # 5 pods allowed; 4 replicas + 25% surge (1) = 5 fit, 5 replicas + 2 do not.
    def web(replicas, strategy=None):
        return gpu_deployment(
            "globex", name="web", gpus=0, tolerate=False, select=False, replicas=replicas, resources=CPU_ONLY
        ), strategy

    for r in healthy:
        if r.kind == "ResourceQuota" and r.namespace == "globex":
            r.props["spec"]["hard"].update({"pods": "5", "requests.cpu": "100", "limits.cpu": "100"})
            r.props["spec"]["hard"].update({"requests.memory": "100Gi", "limits.memory": "100Gi"})
    four, _ = web(4.0)
    assert fit(healthy + [four]) == []
    five, _ = web(5.0)
    [violation] = fit(healthy + [five])
    assert "needs pods=7" in violation.message and "7 pods (replicas 5 + surge 2)" in violation.message
    assert "set maxSurge 0 on Deployment globex/web" in violation.message
    explicit, _ = web(4.0)
    explicit.props["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2.0}}
    assert "6 pods (replicas 4 + surge 2)" in fit(healthy + [explicit])[0].message


def test_pvc_storage_over_quota(healthy):
    claim = k8s(
        "PersistentVolumeClaim",
        "cache",
        "acme",
        spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "30Gi"}}},
    )
    [violation] = fit(healthy + [claim])
    assert "needs requests.storage=30Gi" in violation.message and "10Gi above" in violation.message
    assert "shrink or drop claims (the largest: PersistentVolumeClaim acme/cache" in violation.message


def test_statefulset_claims_count_per_replica(healthy):
    web = gpu_deployment("globex", name="db", gpus=0, tolerate=False, select=False, resources=CPU_ONLY)
    stateful = k8s(
        "StatefulSet",
        "db",
        "globex",
        "apps/v1",
        "apps/v1",
        spec={
            **web.props["spec"],
            "replicas": 3.0,
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "5Gi"}}}}
            ],
        },
    )
    messages = [v.message for v in fit(healthy + [stateful])]
    # 3 claims of the 2 allowed, 15Gi of the 20Gi; and no surge for a StatefulSet.
    assert any("needs persistentvolumeclaims=3" in m for m in messages)
    assert not any("requests.storage" in m for m in messages)
    assert any("StatefulSet globex/db 3 pods (replicas 3 + surge 0) x 1 = 3" in m for m in messages)


def test_container_without_resources_gets_the_limit_range_default(healthy):
    bare = gpu_deployment("globex", name="bare", gpus=0, tolerate=False, select=False, resources={})
    bare.props["spec"]["replicas"] = 8.0
    bare.props["spec"]["strategy"] = {"type": "Recreate"}
    # 8 pods x the default 512Mi limit = 4Gi: fits 16Gi; 8 x 250m requests = 2 cores: fits 4.
    assert fit(healthy + [bare]) == []
    bare.props["spec"]["replicas"] = 10.0
    for r in healthy:
        if r.kind == "LimitRange" and r.namespace == "globex":
            r.props["spec"]["limits"][1]["defaultRequest"]["cpu"] = "500m"
    [violation] = fit(healthy + [bare])
    assert "needs requests.cpu=5" in violation.message and "x 0.5 = 5" in violation.message


def test_container_without_a_limit_and_no_default_is_refused(healthy):
    for r in healthy:
        if r.kind == "LimitRange" and r.namespace == "globex":
            r.props["spec"]["limits"] = []
    bare = gpu_deployment(
        "globex", name="bare", gpus=0, tolerate=False, select=False, resources={"requests": {"cpu": "1"}}
    )
    messages = [v.message for v in fit(healthy + [bare])]
    assert any("without limits.cpu and the namespace's LimitRange gives no default" in m for m in messages)


def test_scoped_quota_counts_only_the_pods_it_selects(healthy):
    # A quota that forbids other tiers' PriorityClasses (pods: 0 outside platform-silver) leaves silver pods alone.
    scoped = k8s(
        "ResourceQuota",
        "other-priorities",
        "acme",
        spec={
            "hard": {"pods": "0"},
            "scopeSelector": {
                "matchExpressions": [{"scopeName": "PriorityClass", "operator": "NotIn", "values": ["platform-silver"]}]
            },
        },
    )
    worker = next(r for r in healthy if r.kind == "Deployment")
    worker.props["spec"]["template"]["spec"]["priorityClassName"] = "platform-silver"
    assert fit(healthy + [scoped]) == []
    worker.props["spec"]["template"]["spec"]["priorityClassName"] = "system-cluster-critical"
    [violation] = fit(healthy + [scoped])
    assert violation.resource == "ResourceQuota acme/other-priorities" and "needs pods=1" in violation.message
    assert "admits no pods its scope selects: give them the tier's PriorityClass" in violation.message


# -- LimitRange --------------------------------------------------------------------------------------


def test_container_limit_above_limit_range_max(healthy):
    worker = next(r for r in healthy if r.kind == "Deployment")
    container(worker)["resources"]["limits"]["memory"] = "20Gi"
    [violation] = limit_range(healthy)
    assert violation.resource == "Deployment acme/worker"
    assert "container 'engine' has a memory limit of 20Gi, 4Gi above the Container max 16Gi" in violation.message
    assert "LimitRange acme/tenant-limits" in violation.message and "`memoryLimit`" in violation.message


def test_container_request_above_limit_range_max(healthy):
    worker = next(r for r in healthy if r.kind == "Deployment")
    container(worker)["resources"] = {"requests": {"cpu": "9", "memory": "1Gi"}}
    messages = [v.message for v in limit_range(healthy)]
    assert any("has a cpu request of 9, 1 above the Container max 8" in m for m in messages)


def test_pod_total_above_the_pod_max(healthy):
    worker = next(r for r in healthy if r.kind == "Deployment")
    pod = worker.props["spec"]["template"]["spec"]
    sidecar = {**container(worker), "name": "sidecar", "resources": {"limits": {"cpu": "7", "memory": "1Gi"}}}
    pod["containers"].append(sidecar)
    [violation] = limit_range(healthy)
    assert "Deployment acme/worker (per pod) has a cpu limit of 9, 1 above the Pod max 8" in violation.message


def test_default_limit_above_the_max_is_caught(healthy):
    for r in healthy:
        if r.kind == "LimitRange" and r.namespace == "globex":
            r.props["spec"]["limits"][1]["default"]["memory"] = "32Gi"
    bare = gpu_deployment("globex", name="bare", gpus=0, tolerate=False, select=False, resources={})
    messages = [v.message for v in limit_range(healthy + [bare])]
    assert any("container 'engine' has a memory limit of 32Gi" in m for m in messages)


def test_claim_above_the_limit_range_claim_max(healthy):
    for r in healthy:
        if r.kind == "LimitRange" and r.namespace == "acme":
            r.props["spec"]["limits"].append({"type": "PersistentVolumeClaim", "max": {"storage": "10Gi"}})
    claim = k8s("PersistentVolumeClaim", "cache", "acme", spec={"resources": {"requests": {"storage": "15Gi"}}})
    [violation] = limit_range(healthy + [claim])
    assert "PersistentVolumeClaim acme/cache requests storage=15Gi, above the claim max 10Gi" in violation.message


def test_platform_namespaces_are_not_checked(healthy):
    big = gpu_deployment("platform-gateway", name="gateway", gpus=0, tolerate=False, select=False)
    container(big)["resources"]["limits"]["memory"] = "64Gi"
    assert limit_range(without(healthy) + [big]) == []
