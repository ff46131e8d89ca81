"""What a real cluster and the real engine need on the first `pulumi up`, checked on the rendered program."""

from __future__ import annotations

import pulumi
import pytest

from tests.builders import STACKS, minimal_config, stack_config


@pytest.mark.parametrize("stack", STACKS)
def test_platform_pods_outrank_every_tenant_tier(stack, run_program):
    capture = run_program(stack_config(stack), stack=stack)
    classes = {pc.inputs["metadata"]["name"]: pc.inputs["value"] for pc in capture.objects("PriorityClass")}
    critical = classes.pop("platform-critical")
    assert classes and all(value < critical for value in classes.values())
    values = capture.releases()["kube-prometheus-stack"].inputs["values"]
    assert values["prometheus"]["prometheusSpec"]["priorityClassName"] == "platform-critical"
    assert capture.releases()["prometheus-adapter"].inputs["values"]["priorityClassName"] == "platform-critical"


@pytest.mark.parametrize("stack", STACKS)
def test_control_plane_scrapes_that_cannot_work_are_off(stack, run_program):
    values = run_program(stack_config(stack), stack=stack).releases()["kube-prometheus-stack"].inputs["values"]
    for component in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
        assert values[component] == {"enabled": False}
    config = stack_config("kind")
    config["gpu-platform:monitoring"] = {"controlPlaneScrapes": True}
    values = run_program(config, stack="kind").releases()["kube-prometheus-stack"].inputs["values"]
    assert values["kubeEtcd"] == {"enabled": True}


def test_kube_prometheus_stack_gets_time_to_become_ready(run_program):
    stack = run_program(stack_config("kind"), stack="kind").releases()["kube-prometheus-stack"].inputs
    assert stack["timeout"] >= 600


def test_tenant_monitors_cannot_reach_other_namespaces(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    spec = capture.releases()["kube-prometheus-stack"].inputs["values"]["prometheus"]["prometheusSpec"]
    assert spec["enforcedNamespaceLabel"] == "namespace"
    excluded = {e["namespace"] for e in spec["excludedFromEnforcement"]}
    # The platform's own exporters and rules keep the labels that attribute GPUs to tenants...
    assert {"gpu-operator", "monitoring", "platform-gateway"} <= excluded
    # ...and nothing a tenant owns is excluded.
    assert not excluded & {"acme", "globex", "globex-dev", "initech"}
    # The API server refuses a tenant monitor that selects another namespace.
    [policy] = [r.inputs for r in capture.objects("ValidatingAdmissionPolicy")]
    [binding] = [r.inputs for r in capture.objects("ValidatingAdmissionPolicyBinding")]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["key"] == "platform.io/tenant"
    rule = policy["spec"]["matchConstraints"]["resourceRules"][0]
    assert set(rule["resources"]) == {"servicemonitors", "podmonitors"}


def test_own_namespace_expression_decides_like_the_api_server_would():
    """The CEL expression, evaluated with cel-python for these cases."""
    import celpy

    from components.monitoring import OWN_NAMESPACE_ONLY

    env = celpy.Environment()
    program = env.program(env.compile(OWN_NAMESPACE_ONLY))

    def allowed(spec):
        activation = {"object": celpy.json_to_cel({"spec": spec}), "request": celpy.json_to_cel({"namespace": "acme"})}
        return bool(program.evaluate(activation))

    assert allowed({})
    assert allowed({"namespaceSelector": {"matchNames": ["acme"]}})
    assert not allowed({"namespaceSelector": {"matchNames": ["acme", "globex"]}})
    assert not allowed({"namespaceSelector": {"any": True}})
    assert allowed({"namespaceSelector": {"any": False}})


def test_tenants_may_only_use_their_own_tiers_priority_class(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    quotas = {
        (q.inputs["metadata"]["namespace"], q.inputs["metadata"]["name"]): q.inputs["spec"]
        for q in capture.objects("ResourceQuota")
        if q.inputs["metadata"]["name"] == "tenant-priority-classes"
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
    namespace = capture.find("Namespace", "gpu-operator").inputs
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


@pytest.mark.parametrize("stack", STACKS)
def test_every_pvc_can_name_the_platform_storage_class(stack, run_program):
    config = stack_config(stack)
    config["gpu-platform:platform"]["storageClass"] = "local-path"
    capture = run_program(config, stack=stack)
    claims = [c.inputs["spec"] for c in capture.objects("PersistentVolumeClaim")]
    for statefulset in capture.objects("StatefulSet"):
        claims += [t["spec"] for t in statefulset.inputs["spec"].get("volumeClaimTemplates", [])]
    spec = capture.releases()["kube-prometheus-stack"].inputs["values"]["prometheus"]["prometheusSpec"]
    claims.append(spec["storageSpec"]["volumeClaimTemplate"]["spec"])
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


# -- ordering: what the engine waits for ------------------------------------------------------------

CRD_GROUPS = {"monitoring.coreos.com": "kube-prometheus-stack", "gateway.networking.k8s.io": "gateway-api"}


def waits_for(capture, resource) -> set[str]:
    """Every URN the engine finishes before creating `resource` (its dependencies, transitively)."""
    by_urn = {r.urn: r for r in capture.resources}
    seen: set[str] = set()
    pending = list(resource.dependencies)
    while pending:
        urn = pending.pop()
        if urn in seen:
            continue
        seen.add(urn)
        if urn in by_urn:
            pending.extend(by_urn[urn].dependencies)
            # depends_on a component waits for all of the component's children
            pending.extend(r.urn for r in capture.resources if r.parent == urn)
    return seen


def installers(capture, group: str) -> set[str]:
    if group == "monitoring.coreos.com":
        release = capture.releases().get("kube-prometheus-stack")
        return {release.urn} if release else set()
    return {r.urn for r in capture.objects("CustomResourceDefinition") if r.inputs["spec"]["group"] == group}


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("exposure", ["default", "gateway-api"])
def test_every_custom_resource_waits_for_what_installs_its_crd(stack, exposure, run_program):
    config = stack_config(stack)
    if exposure == "gateway-api":
        config["gpu-platform:gateway"] = {"exposure": "gateway-api", "gatewayApi": {"installCrds": True}}
    capture = run_program(config, stack=stack)
    custom = [r for r in capture.kubernetes() if r.inputs["apiVersion"].split("/")[0] in CRD_GROUPS]
    assert custom
    for resource in custom:
        group = resource.inputs["apiVersion"].split("/")[0]
        wanted = installers(capture, group)
        assert wanted, f"nothing installs the CRD of {resource.inputs['kind']} in stack {stack}"
        assert wanted & waits_for(capture, resource), (
            f"{stack}: {resource.inputs['kind']} {resource.inputs['metadata'].get('namespace')}/"
            f"{resource.inputs['metadata']['name']} does not wait for what installs its CRD"
        )


@pytest.mark.parametrize("stack", STACKS)
def test_worker_pods_wait_for_their_priority_class_and_the_gpu_pool(stack, run_program):
    capture = run_program(stack_config(stack), stack=stack)
    classes = {r.inputs["metadata"]["name"]: r.urn for r in capture.objects("PriorityClass")}
    pool = {r.urn for name, r in capture.releases().items() if name in ("fake-gpu-operator", "nvidia-device-plugin")}
    pool |= {r.urn for r in capture.of_type("aws:eks/nodeGroup:NodeGroup")}
    workloads = [r for r in capture.kubernetes() if r.inputs["kind"] in ("Deployment", "StatefulSet")]
    assert workloads
    for workload in workloads:
        pod = workload.inputs["spec"]["template"]["spec"]
        name = f"{stack}: {workload.inputs['kind']} {workload.inputs['metadata']['namespace']}/{workload.inputs['metadata']['name']}"
        before = waits_for(capture, workload)
        assert pod.get("priorityClassName"), f"{name} has no PriorityClass"
        assert classes[pod["priorityClassName"]] in before, f"{name} does not wait for its PriorityClass"
        gpus = sum(int(c["resources"].get("limits", {}).get("nvidia.com/gpu", 0)) for c in pod["containers"])
        if gpus:
            assert pool & before, f"{name} requests GPUs but does not wait for the GPU pool"
