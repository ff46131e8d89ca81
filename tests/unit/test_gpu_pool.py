"""GpuNodePool under mocks: fake, onprem and eks modes; chart values against vendored defaults."""

from __future__ import annotations

import pytest
import yaml

from components.chart_values import chart_name, unknown_keys, vendored_values
from tests.builders import STACKS, minimal_config, stack_config


def capacity(capture):
    return capture.find("ConfigMap", "platform-capacity", "platform-system").inputs["data"]


def test_fake_pool_labels_taints_and_installs_fake_operator(run_program):
    config = minimal_config()
    config["gpu-platform:gpuPool"] = {"nodes": ["w1", "w2"], "fake": {"gpusPerNode": 4}}
    capture = run_program(config)
    patches = [r.inputs for r in capture.objects("Node")]
    assert sorted(p["metadata"]["name"] for p in patches) == ["w1", "w2"]
    for patch in patches:
        assert patch["metadata"]["labels"]["platform.io/pool"] == "gpu"
        assert patch["metadata"]["labels"]["run.ai/simulated-gpu-node-pool"] == "default"
        assert patch["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
    operator = capture.releases()["fake-gpu-operator"].inputs
    assert operator["version"] == "0.2.0" and operator["chart"].startswith("oci://ghcr.io/run-ai/")
    assert operator["values"]["topology"]["nodePools"]["default"]["gpuCount"] == 4
    # Capacity follows the pool: 2 nodes x 4 fake GPUs, whatever the stack declared (8).
    assert capacity(capture)["gpu"] == "8"


def test_single_node_pool_is_not_tainted(run_program):
    capture = run_program(stack_config("minikube"), stack="minikube")
    [patch] = [r.inputs for r in capture.objects("Node")]
    assert "spec" not in patch or not patch["spec"]
    assert patch["metadata"]["labels"]["platform.io/pool"] == "gpu"


def test_onprem_pool_uses_seed_c_label_taint_and_time_slicing(run_program):
    shipped = run_program(stack_config("onprem"), stack="onprem")
    [patch] = [r.inputs for r in shipped.objects("Node")]
    # The shipped onprem cluster is its GPU node: labelled, never tainted, so platform pods can run.
    assert patch["metadata"]["labels"] == {"gpu": "true"} and not patch.get("spec")
    config = stack_config("onprem")
    config["gpu-platform:platform"]["nodes"] = ["cpu-node-01"]
    config["gpu-platform:gpuPool"]["taintNodes"] = True
    capture = run_program(config, stack="onprem")
    [patch] = [r.inputs for r in capture.objects("Node")]
    assert patch["spec"]["taints"] == [{"key": "gpu-only", "value": "true", "effect": "NoSchedule"}]
    assert patch["metadata"]["annotations"]["pulumi.com/patchFieldManager"] == "gpu-platform-pool"
    plugin = capture.releases()["nvidia-device-plugin"].inputs
    # The chart's default affinity wants node-feature-discovery labels nothing sets: it must select the pool.
    [term] = plugin["values"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term == {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["true"]}]}
    assert plugin["version"] == "0.20.0"
    assert {"key": "gpu-only", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in plugin["values"][
        "tolerations"
    ]
    sharing = yaml.safe_load(plugin["values"]["config"]["map"]["default"])
    assert sharing["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    assert capacity(capture)["gpu"] == "4"  # 1 GPU x 4 time-slices


def test_eks_pool_node_group_from_instance_type(run_program):
    capture = run_program(stack_config("gpu-cloud"), stack="gpu-cloud")
    [group] = capture.of_type("aws:eks/nodeGroup:NodeGroup")
    inputs = group.inputs
    assert inputs["instanceTypes"] == ["g5.12xlarge"] and inputs["amiType"] == "AL2023_x86_64_NVIDIA"
    assert inputs["scalingConfig"] == {"minSize": 1, "maxSize": 4, "desiredSize": 2}
    assert inputs["labels"] == {"platform.io/pool": "gpu"}
    assert inputs["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert inputs["tags"]["k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"] == "4"
    assert inputs["tags"]["k8s.io/cluster-autoscaler/inference-prod"] == "owned"
    assert len(capture.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")) == 3
    assert capacity(capture)["gpu"] == "16"  # 4 GPUs x maxSize 4


def test_eks_pool_gpus_follow_the_instance_type(run_program):
    config = stack_config("gpu-cloud")
    config["gpu-platform:gpuPool"]["eks"]["instanceType"] = "p5.48xlarge"
    config["gpu-platform:gpuPool"]["eks"]["maxSize"] = 2
    capture = run_program(config, stack="gpu-cloud")
    assert capacity(capture)["gpu"] == "16"  # 8 H100 x 2 nodes


def test_eks_unknown_instance_type_offline_is_an_error(run_program):
    config = stack_config("gpu-cloud")
    config["gpu-platform:gpuPool"]["eks"]["instanceType"] = "m5.large"
    with pytest.raises(Exception, match="knows no GPU instance type 'm5.large'"):
        run_program(config, stack="gpu-cloud")


@pytest.mark.parametrize("stack", STACKS)
def test_every_chart_value_exists_in_the_vendored_chart(run_program, stack):
    capture = run_program(stack_config(stack), stack=stack)
    found = {name: release.inputs for name, release in capture.releases().items()}
    assert found, f"stack {stack} installs no chart"
    for release in found.values():
        defaults = vendored_values(chart_name(release["chart"]))
        assert unknown_keys(release["values"], defaults) == [], release["name"]


def test_unknown_keys_catches_typos_but_not_free_form_maps():
    defaults = vendored_values("nvidia-device-plugin")
    assert unknown_keys({"toleration": []}, defaults) == ["toleration"]
    assert unknown_keys({"config": {"map": {"anything": "x"}, "nmae": "y"}}, defaults) == ["config.nmae"]
    assert unknown_keys({"nodeSelector": {"any/label": "x"}}, defaults) == []


def test_pool_config_errors():
    from infra.stack_file import ConfigError, parse_stack_config, project_values

    def problems(pool, flavour="kind"):
        config = minimal_config()
        config["gpu-platform:platform"]["flavour"] = flavour
        config["gpu-platform:gpuPool"] = pool
        with pytest.raises(ConfigError) as caught:
            parse_stack_config(project_values(config), "s.yaml")
        return caught.value.problems[0]

    assert problems({}).startswith("gpuPool.nodes: the fake GPU pool needs")
    assert problems({"nodes": ["n"], "taint": "gpu-only=true:NoSchedule"}).startswith(
        "gpuPool.taint: fake-gpu-operator"
    )
    assert problems({"mode": "onprem", "nodes": ["n"]}).startswith("gpuPool.gpusPerNode")
    # Tainting every node the platform's own pods could use leaves them Pending.
    assert problems({"nodes": ["cpu-node-1"]}).startswith("gpuPool.taintNodes: tainting ['cpu-node-1']")
    assert "platform.nodes" in problems({"nodes": ["cpu-node-1"]})
    assert problems({}, flavour="eks").startswith("gpuPool.eks: the eks GPU pool needs")
    assert "minSize <= desiredSize <= maxSize" in problems(
        {"eks": {"clusterName": "c", "subnetIds": ["s"], "minSize": 3, "maxSize": 2}}, flavour="eks"
    )


def test_pool_modes_are_one_table_on_each_side():
    from components.gpu_node_pool import BUILDERS
    from infra.config.pool_modes import POOL_MODES, default_mode

    assert set(BUILDERS) == set(POOL_MODES)
    # Every flavour has exactly one default mode.
    flavours = [f for mode in POOL_MODES.values() for f in mode.default_for]
    assert sorted(flavours) == sorted(set(flavours)) == ["eks", "kind", "minikube", "onprem"]
    assert default_mode("kind") == "fake" and default_mode("eks") == "eks"


def test_unknown_pool_mode_names_the_known_ones():
    from infra.stack_file import ConfigError, parse_stack_config, project_values

    config = minimal_config()
    config["gpu-platform:gpuPool"]["mode"] = "gke"
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(project_values(config), "s.yaml")
    from infra.config.pool_modes import POOL_MODES

    assert "gpuPool.mode" in str(caught.value) and all(mode in str(caught.value) for mode in POOL_MODES)
