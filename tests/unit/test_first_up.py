"""What a real cluster and the real engine need on the first `pulumi up`, checked on the rendered program."""

from __future__ import annotations

import pulumi
import pytest

from tests.conftest import STACKS, minimal_config, stack_config


def releases(capture):
    return {r.inputs["name"]: r.inputs for r in capture.of_type("kubernetes:helm.sh/v3:Release")}


def objects(capture, kind):
    return [r.inputs for r in capture.kubernetes() if r.inputs["kind"] == kind]


@pytest.mark.parametrize("stack", STACKS)
def test_platform_pods_outrank_every_tenant_tier(stack, run_program):
    capture = run_program(stack_config(stack), stack=stack)
    classes = {pc["metadata"]["name"]: pc["value"] for pc in objects(capture, "PriorityClass")}
    critical = classes.pop("platform-critical")
    assert classes and all(value < critical for value in classes.values())
    values = releases(capture)["kube-prometheus-stack"]["values"]
    assert values["prometheus"]["prometheusSpec"]["priorityClassName"] == "platform-critical"
    assert releases(capture)["prometheus-adapter"]["values"]["priorityClassName"] == "platform-critical"


@pytest.mark.parametrize("stack", STACKS)
def test_control_plane_scrapes_that_cannot_work_are_off(stack, run_program):
    values = releases(run_program(stack_config(stack), stack=stack))["kube-prometheus-stack"]["values"]
    for component in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
        assert values[component] == {"enabled": False}
    config = stack_config("kind")
    config["gpu-platform:monitoring"] = {"controlPlaneScrapes": True}
    values = releases(run_program(config, stack="kind"))["kube-prometheus-stack"]["values"]
    assert values["kubeEtcd"] == {"enabled": True}


def test_kube_prometheus_stack_gets_time_to_become_ready(run_program):
    stack = releases(run_program(stack_config("kind"), stack="kind"))["kube-prometheus-stack"]
    assert stack["timeout"] >= 600


def test_tenant_monitors_cannot_reach_other_namespaces(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    spec = releases(capture)["kube-prometheus-stack"]["values"]["prometheus"]["prometheusSpec"]
    assert spec["ignoreNamespaceSelectors"] is True and spec["enforcedNamespaceLabel"] == "namespace"
    excluded = {(e["resource"], e["namespace"], e["name"]) for e in spec["excludedFromEnforcement"]}
    # The platform's own GPU exporter and rules keep the labels that attribute GPUs to tenants.
    assert ("servicemonitors", "gpu-operator", "fake-gpu-metrics") in excluded
    assert ("prometheusrules", "monitoring", "gpu-platform") in excluded
    # ...and nothing a tenant owns is excluded.
    tenant_namespaces = {ns for tenant in ("acme", "globex", "globex-dev", "initech") for ns in [tenant]}
    assert not {namespace for _, namespace, _ in excluded} & tenant_namespaces


def test_tenants_may_only_use_their_own_tiers_priority_class(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    quotas = {
        (q["metadata"]["namespace"], q["metadata"]["name"]): q["spec"]
        for q in objects(capture, "ResourceQuota")
        if q["metadata"]["name"] == "tenant-priority-classes"
    }
    acme = quotas[("acme", "tenant-priority-classes")]
    assert acme["hard"] == {"pods": "0"}
    [expression] = acme["scopeSelector"]["matchExpressions"]
    assert expression["scopeName"] == "PriorityClass" and expression["operator"] == "In"
    forbidden = set(expression["values"])
    assert "platform-gold" not in forbidden
    assert {"platform-critical", "platform-silver", "platform-bronze", "system-cluster-critical"} <= forbidden
    # Every tenant namespace has one, each allowing only its own tier.
    assert {ns for ns, _ in quotas} == {"acme", "globex", "globex-dev", "initech"}
    assert "platform-bronze" not in set(
        quotas[("initech", "tenant-priority-classes")]["scopeSelector"]["matchExpressions"][0]["values"]
    )


def test_gpu_operator_namespace_is_privileged_and_precedes_its_releases(run_program):
    capture = run_program(stack_config("onprem"), stack="onprem")
    [namespace] = [n for n in objects(capture, "Namespace") if n["metadata"]["name"] == "gpu-operator"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


@pytest.mark.parametrize("stack", STACKS)
def test_every_pvc_can_name_the_platform_storage_class(stack, run_program):
    config = stack_config(stack)
    config["gpu-platform:platform"]["storageClass"] = "local-path"
    capture = run_program(config, stack=stack)
    claims = [c["spec"] for c in objects(capture, "PersistentVolumeClaim")]
    for statefulset in objects(capture, "StatefulSet"):
        claims += [t["spec"] for t in statefulset["spec"].get("volumeClaimTemplates", [])]
    assert claims
    # A claim that names its own class keeps it (gpu-cloud's cache asks for gp3).
    assert all(c.get("storageClassName") in ("local-path", "gp3") for c in claims)
    assert any(c.get("storageClassName") == "local-path" for c in claims)


def test_eks_node_group_waits_for_its_role_and_leaves_size_to_the_autoscaler(run_program, monkeypatch):
    import pulumi_aws as aws

    seen = {}
    original = aws.eks.NodeGroup

    def recording(name, *args, opts=None, **kwargs):
        seen["opts"] = opts
        return original(name, *args, opts=opts, **kwargs)

    monkeypatch.setattr(aws.eks, "NodeGroup", recording)
    run_program(stack_config("gpu-cloud"), stack="gpu-cloud")
    opts: pulumi.ResourceOptions = seen["opts"]
    assert "scalingConfig.desiredSize" in opts.ignore_changes
    assert len(opts.depends_on) == 3  # the three worker-policy attachments


def test_gpu_cloud_names_its_kubernetes_context():
    assert stack_config("gpu-cloud")["kubernetes:context"]


def test_pool_cannot_be_declared_bigger_than_it_is():
    from infra.stack_file import ConfigError, parse_stack_config, project_values

    config = minimal_config()
    config["gpu-platform:platform"]["capacity"]["nvidia.com/gpu"] = 80  # the fake pool is 1 node x 8
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(project_values(config), "s.yaml")
    assert "platform.capacity.nvidia.com/gpu" in str(caught.value) and "8" in str(caught.value)
