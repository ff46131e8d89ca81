"""Each rule passes a compliant fixture and fails a broken one, naming the tenant or resource."""

from __future__ import annotations

import pytest

from policies.platform_rules import REGISTRY, Resource, evaluate
from tests.policies.conftest import capacity, fake_pool, gpu_deployment, hpa, k8s, tenant_namespace, without


def by_policy(violations, name):
    return [v for v in violations if v.policy == name]


def test_compliant_stack_has_no_violations(healthy):
    assert evaluate(healthy) == []


def test_tenant_at_40_percent_of_gpus_fails_capacity_share(healthy):
    # acme's two namespaces hold 2 + 2 GPUs of the cluster's 10 (two fake nodes of 5): 40%.
    resources = without(healthy, "ConfigMap", "Release", "Node") + [capacity(gpu="10"), *fake_pool(5.0, ("g1", "g2"))]
    resources += tenant_namespace("acme-dev", "acme")
    for r in resources:
        if r.kind == "ResourceQuota" and r.namespace in ("acme", "acme-dev"):
            r.props["spec"]["hard"]["requests.nvidia.com/gpu"] = 2.0
    [violation] = by_policy(evaluate(resources), "tenant-capacity-share")
    assert violation.level == "mandatory"
    assert "tenant 'acme'" in violation.message and "requests.nvidia.com/gpu=4" in violation.message
    assert "40%" in violation.message and "30%" in violation.message and "acme, acme-dev" in violation.message


def test_pack_capacity_is_a_ceiling_and_the_fallback(healthy):
    # The stack's record says 8 GPUs; the pack's configured 2 is a ceiling: 1 of 2 is 50% for each tenant.
    flagged = by_policy(evaluate(healthy, {"capacity": {"gpu": "2"}}), "tenant-capacity-share")
    assert {v.resource for v in flagged} == {"tenant acme", "tenant globex"}
    assert all("declared 2 by the policy pack's capacity.gpu" in v.message for v in flagged)
    # Without a capacity record, the pack's capacity is the cluster's size.
    no_record = without(healthy, "ConfigMap")
    assert (
        by_policy(
            evaluate(no_record, {"capacity": {"gpu": "8", "cpu": "64", "memory": "256Gi"}}), "tenant-capacity-share"
        )
        == []
    )
    flagged = by_policy(
        evaluate(no_record, {"capacity": {"gpu": "2", "cpu": "64", "memory": "256Gi"}}), "tenant-capacity-share"
    )
    assert {v.resource for v in flagged} == {"tenant acme", "tenant globex"}


def test_over_subscription_across_all_tenants(healthy):
    # The pack allows each tenant all of the cluster and over-subscription 2: 16 cores of limits on 10 pass.
    pack = {"maxTenantShare": 1.0, "overSubscriptionRatio": 2.0}
    resources = without(healthy, "ConfigMap") + [capacity(cpu="10", share="1.0", ratio="2.0")]
    assert by_policy(evaluate(resources, pack), "tenant-capacity-share") == []
    # The stack tightens the ratio to 1: that it may do, and then the sum is over.
    resources = without(healthy, "ConfigMap") + [capacity(cpu="10", share="1.0", ratio="1.0")]
    violations = by_policy(evaluate(resources, pack), "tenant-capacity-share")
    assert any("all tenants together hold limits.cpu=16" in v.message for v in violations)
    assert any("overSubscriptionRatio 1, set by the stack's capacity record" in v.message for v in violations)


def test_hpa_that_outgrows_its_quota(healthy):
    resources = without(healthy, "HorizontalPodAutoscaler") + [hpa("acme", "worker", 3.0)]
    violations = by_policy(evaluate(resources), "workloads-fit-quota")
    assert violations and all(v.level == "mandatory" for v in violations)
    gpu = next(v for v in violations if "requests.nvidia.com/gpu" in v.message)
    assert "tenant 'acme'" in gpu.message and "3 pods (maxReplicas 3 + surge 0)" in gpu.message
    assert "needs requests.nvidia.com/gpu=3" in gpu.message and "2 above" in gpu.message
    assert "lower maxReplicas of Deployment acme/worker (3)" in gpu.message
    assert gpu.resource == "ResourceQuota acme/tenant-quota"


def test_gpu_worker_without_toleration_fails_placement(healthy):
    resources = [r for r in healthy if r.kind != "Deployment"] + [gpu_deployment("acme", tolerate=False)]
    [violation] = by_policy(evaluate(resources), "gpu-placement")
    assert (
        violation.resource == "Deployment acme/worker"
        and "does not tolerate the GPU taint 'nvidia.com/gpu'" in violation.message
    )


def test_gpu_worker_must_select_the_pool_by_selector_or_affinity(healthy):
    unplaced = [r for r in healthy if r.kind != "Deployment"] + [gpu_deployment("acme", select=False)]
    assert any("does not select the GPU pool" in v.message for v in evaluate(unplaced))
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "platform.io/pool", "operator": "In", "values": ["gpu"]}]}
                ]
            }
        }
    }
    by_affinity = [r for r in healthy if r.kind != "Deployment"] + [
        gpu_deployment("acme", select=False, affinity=affinity)
    ]
    assert by_policy(evaluate(by_affinity), "gpu-placement") == []


def test_gpu_limit_must_equal_request(healthy):
    deployment = gpu_deployment("acme")
    deployment.props["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = 2.0
    resources = [r for r in healthy if r.kind != "Deployment"] + [deployment]
    assert any("must be equal" in v.message for v in by_policy(evaluate(resources), "gpu-placement"))


def test_custom_taint_from_the_capacity_configmap(healthy):
    # Seed C's taint: the same worker now fails, since it tolerates nvidia.com/gpu only.
    resources = without(healthy, "ConfigMap") + [capacity(taint="gpu-only=true:NoSchedule", label="gpu=true")]
    messages = [v.message for v in by_policy(evaluate(resources), "gpu-placement")]
    assert any("'gpu-only'" in m for m in messages) and any("'gpu=true'" in m for m in messages)


def test_gpu_daemonset_charts_must_tolerate_the_taint(healthy):
    plugin = Resource(
        type="kubernetes:helm.sh/v3:Release",
        name="dp",
        urn="urn:dp",
        props={"name": "nvidia-device-plugin", "chart": "nvidia-device-plugin", "values": {}},
    )
    assert any("without tolerating" in v.message for v in by_policy(evaluate(healthy + [plugin]), "gpu-placement"))
    tolerant = Resource(
        plugin.type,
        plugin.name,
        plugin.urn,
        {
            **plugin.props,
            "values": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
        },
    )
    assert by_policy(evaluate(healthy + [tolerant]), "gpu-placement") == []


def test_cpu_workload_tolerating_gpu_taint_is_advisory(healthy):
    cpu_only = gpu_deployment("acme", name="web", gpus=0)
    [violation] = by_policy(evaluate(healthy + [cpu_only]), "gpu-taint-toleration-scoped")
    assert violation.level == "advisory" and "Deployment acme/web" in violation.message


@pytest.mark.parametrize("missing", ["ResourceQuota", "LimitRange", "NetworkPolicy"])
def test_tenant_guardrails_missing_objects(healthy, missing):
    resources = [r for r in healthy if not (r.kind == missing and r.namespace == "globex")]
    [violation] = by_policy(evaluate(resources), "tenant-guardrails")
    assert "globex" in violation.message and violation.level == "mandatory"


def test_tenant_guardrails_reject_exposed_services(healthy):
    service = k8s("Service", "public", "acme", spec={"type": "LoadBalancer", "ports": [{"port": 80.0}]})
    [violation] = by_policy(evaluate(healthy + [service]), "tenant-guardrails")
    assert "Service acme/public" in violation.message and "LoadBalancer" in violation.message


def test_default_deny_must_deny_everything(healthy):
    for r in healthy:
        if r.kind == "NetworkPolicy" and r.namespace == "acme":
            r.props["spec"]["ingress"] = [{"from": [{"podSelector": {}}]}]
    [violation] = by_policy(evaluate(healthy), "tenant-guardrails")
    assert "default-deny" in violation.message and "'acme'" in violation.message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda pod, c: c["securityContext"].update(privileged=True), "is privileged"),
        (lambda pod, c: pod.update(hostNetwork=True), "sets hostNetwork"),
        (lambda pod, c: pod.update(volumes=[{"name": "root", "hostPath": {"path": "/"}}]), "hostPath"),
        (lambda pod, c: (pod.pop("securityContext"), c["securityContext"].pop("runAsNonRoot")), "may run as root"),
        (lambda pod, c: c["securityContext"].pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
        (lambda pod, c: c["resources"]["limits"].pop("memory"), "no limits for memory"),
        (lambda pod, c: c.update(image="vllm/vllm-openai:latest"), "is not pinned"),
        (lambda pod, c: c.update(image="vllm/vllm-openai"), "is not pinned"),
    ],
)
def test_workload_security_in_tenant_namespaces_is_mandatory(healthy, change, expected):
    deployment = next(r for r in healthy if r.kind == "Deployment")
    pod = deployment.props["spec"]["template"]["spec"]
    change(pod, pod["containers"][0])
    violations = by_policy(evaluate(healthy), "workload-security")
    assert any(expected in v.message and "tenant 'acme'" in v.message for v in violations), violations


def test_workload_security_elsewhere_is_advisory(healthy):
    platform = gpu_deployment("platform-gateway", name="gateway", gpus=0, tolerate=False, select=False)
    platform.props["spec"]["template"]["spec"]["containers"][0]["image"] = "gateway:latest"
    violations = evaluate(healthy + [platform])
    assert by_policy(violations, "workload-security") == []
    [advisory] = by_policy(violations, "workload-security-platform")
    assert advisory.level == "advisory" and "not pinned" in advisory.message


def test_digest_pinned_image_passes(healthy):
    deployment = next(r for r in healthy if r.kind == "Deployment")
    deployment.props["spec"]["template"]["spec"]["containers"][0]["image"] = "vllm/vllm-openai@sha256:" + "a" * 64
    assert evaluate(healthy) == []


def test_secrets_hygiene(healthy):
    leaky_map = k8s("ConfigMap", "settings", "acme", data={"OPENAI_API_KEY": "whatever", "mode": "fast"})
    token_value = k8s("ConfigMap", "other", "acme", data={"upstream": "sk-abcdefghijklmnopqrstuvwx"})
    deployment = gpu_deployment("acme", name="leaky")
    deployment.props["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "HF_TOKEN", "value": "hf_abc"},
        {"name": "SAFE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    violations = by_policy(evaluate(healthy + [leaky_map, token_value, deployment]), "secrets-hygiene")
    assert {v.resource for v in violations} == {
        "ConfigMap acme/settings",
        "ConfigMap acme/other",
        "Deployment acme/leaky",
    }
    assert all(v.level == "mandatory" for v in violations)


def test_every_rule_has_a_description_level_and_severity():
    names = [rule.name for rule in REGISTRY]
    assert len(names) == len(set(names))
    for rule in REGISTRY:
        assert rule.description and rule.level in ("mandatory", "advisory")
        assert rule.severity in ("low", "medium", "high", "critical")
        assert rule.name == rule.name.lower() and " " not in rule.name


def test_pack_wires_exactly_the_registry():
    import sys
    from pathlib import Path

    pack_dir = str(Path(__file__).resolve().parents[2] / "policies")
    sys.path.insert(0, pack_dir)
    try:
        from platform_rules.pack import policies  # the import path the pack's __main__.py uses
    finally:
        sys.path.remove(pack_dir)
    built = policies()
    assert [p.name for p in built] == [rule.name for rule in REGISTRY]
    main = (Path(pack_dir) / "__main__.py").read_text()
    assert "from platform_rules.pack import policies" in main and "policies=policies()" in main
