"""The 30% rule cannot be switched off by the stack: its thresholds, its record and its denominator."""

from __future__ import annotations

import pytest

from policies.platform_rules import PackConfig, PolicyConfig, evaluate
from tests.policies.conftest import (
    capacity,
    device_plugin_pool,
    eks_node_group,
    fake_pool,
    tenant_namespace,
    without,
)


def share_violations(resources, pack=None):
    return [v for v in evaluate(resources, pack) if v.policy == "tenant-capacity-share"]


def quota(resources, namespace):
    return next(r for r in resources if r.kind == "ResourceQuota" and r.namespace == namespace).props["spec"]["hard"]


def gpu_stack(gpus_held: str = "4", *pool, record=None):
    """One tenant holding `gpus_held` GPUs on a cluster of 10 (record) and the given pool."""
    resources = [record or capacity(gpu="10"), *pool, *tenant_namespace("acme", "acme")]
    quota(resources, "acme")["requests.nvidia.com/gpu"] = gpus_held
    return resources


# -- thresholds belong to whoever runs the pack -----------------------------------------------


def test_a_stack_cannot_loosen_max_tenant_share():
    # 4 of 10 GPUs is 40%: the stack's 0.9 is ignored, the pack's 30% holds.
    resources = gpu_stack("4", *fake_pool(5.0, ("g1", "g2")), record=capacity(gpu="10", share="0.9"))
    [violation] = share_violations(resources)
    assert "above the 30% limit (3; maxTenantShare 30%, set by the policy pack)" in violation.message


def test_a_stack_may_tighten_max_tenant_share_and_is_named_as_owner():
    resources = gpu_stack("2", *fake_pool(5.0, ("g1", "g2")), record=capacity(gpu="10", share="0.1"))
    [violation] = [v for v in share_violations(resources) if "requests.nvidia.com/gpu=2" in v.message]
    assert "above the 10% limit (1;" in violation.message
    assert "set by the stack's capacity record ConfigMap platform-system/platform-capacity" in violation.message
    assert "the pack allows 0.3" in violation.message


def test_the_pack_config_owns_the_threshold():
    resources = gpu_stack("4", *fake_pool(5.0, ("g1", "g2")), record=capacity(gpu="10", share="0.5"))
    assert share_violations(resources, {"maxTenantShare": 0.5}) == []
    assert share_violations(resources, {"maxTenantShare": 0.3})


def test_a_stack_cannot_loosen_over_subscription():
    resources = [capacity(cpu="10", share="1.0", ratio="5.0"), *fake_pool(), *tenant_namespace("a", "a")]
    resources += tenant_namespace("b", "b")
    # Two tenants of 8 cores of limits each on 10 cores: only a ratio the pack allows may excuse it.
    messages = [v.message for v in share_violations(resources, {"maxTenantShare": 1.0})]
    assert any("all tenants together hold limits.cpu=16" in m and "set by the policy pack" in m for m in messages)
    assert share_violations(resources, {"maxTenantShare": 1.0, "overSubscriptionRatio": 2.0}) == []


@pytest.mark.parametrize("bad", ["nan", "inf", "-0.5", "0", "lots"])
def test_an_unreadable_threshold_in_the_record_is_reported_and_ignored(bad):
    resources = gpu_stack("4", *fake_pool(5.0, ("g1", "g2")), record=capacity(gpu="10", share=bad))
    messages = [v.message for v in share_violations(resources)]
    assert any(f"sets maxTenantShare={bad!r}, not a positive number" in m for m in messages)
    assert any("above the 30% limit" in m for m in messages)


# -- the record is found by its label ------------------------------------------------------------


def test_the_capacity_record_is_found_in_a_renamed_system_namespace():
    # A stack whose platform namespace is "ops": the record's namespace no longer matters.
    resources = gpu_stack("4", *fake_pool(5.0, ("g1", "g2")), record=capacity(gpu="10", namespace="ops"))
    [violation] = share_violations(resources)
    assert "ConfigMap ops/platform-capacity" in violation.message and "40%" in violation.message


def test_an_unlabelled_configmap_is_not_the_record():
    # Without the label, the stack declares no capacity: the pool's 10 GPUs are still measured against.
    resources = gpu_stack("4", *fake_pool(5.0, ("g1", "g2")), record=capacity(gpu="1000", labelled=False))
    messages = [v.message for v in share_violations(resources)]
    assert any("40% of the cluster's 10 (10 provided by the GPU pool" in m for m in messages)


def test_a_record_in_a_tenant_namespace_is_ignored():
    tenant_record = capacity(gpu="1000", cpu="1000", memory="1000Ti", namespace="acme")
    resources = gpu_stack("4", *fake_pool(5.0, ("g1", "g2"))) + [tenant_record]
    [violation] = share_violations(resources)
    assert "40% of the cluster's 10" in violation.message


# -- capacity cannot be inflated: min(declared, what the pool provides) ----------------------------


def test_fake_pool_bounds_a_declared_80():
    # The record claims 80 GPUs, fake-gpu-operator advertises 8 on the one labelled node: 2 of 8 is 25%.
    resources = gpu_stack("3", *fake_pool(8.0, ("g1",)), record=capacity(gpu="80"))
    [violation] = share_violations(resources)
    assert "38% of the cluster's 8 (declared 80 by the stack's capacity record" in violation.message
    assert "8 provided by the GPU pool: Helm release 'fake-gpu-operator'" in violation.message
    assert "8 GPUs x 1 labelled nodes" in violation.message
    assert share_violations(gpu_stack("2", *fake_pool(8.0, ("g1",)), record=capacity(gpu="80"))) == []


def test_fake_pool_counts_only_nodes_labelled_into_its_pool():
    nodes = fake_pool(4.0, ("g1", "g2"))
    nodes[2].props["metadata"]["labels"]["run.ai/simulated-gpu-node-pool"] = "elsewhere"
    settings = PolicyConfig.resolve(PackConfig(), [capacity(gpu="80"), *nodes])
    assert settings.capacity["gpu"].amount == 4


def test_onprem_pool_is_time_slicing_x_nodes_x_physical_gpus():
    pool = device_plugin_pool(("n1", "n2"), gpus_per_node="2", replicas=4)
    settings = PolicyConfig.resolve(PackConfig(), [capacity(gpu="100", label="gpu=true"), *pool])
    assert settings.capacity["gpu"].amount == 16
    without_slicing = device_plugin_pool(("n1",), gpus_per_node="1", replicas=None)
    assert PolicyConfig.resolve(PackConfig(), [capacity(gpu="100"), *without_slicing]).capacity["gpu"].amount == 1


def test_onprem_node_without_its_physical_count_is_a_violation():
    resources = gpu_stack("1", *device_plugin_pool(("n1",), gpus_per_node=None), record=capacity(gpu="4"))
    messages = [v.message for v in share_violations(resources)]
    assert any("Node n1 is in the GPU pool but does not record its physical GPUs" in m for m in messages)
    # And the pool then provides 0 GPUs: the tenant's GPU cannot be measured.
    assert any("hold requests.nvidia.com/gpu but the cluster has capacity 0" in m for m in messages)


def test_eks_pool_is_max_size_x_gpus_per_instance():
    settings = PolicyConfig.resolve(PackConfig(), [capacity(gpu="100"), eks_node_group(4.0, "4")])
    assert settings.capacity["gpu"].amount == 16
    messages = [
        v.message for v in share_violations(gpu_stack("4", eks_node_group(2.0, "4"), record=capacity(gpu="100")))
    ]
    assert any("50% of the cluster's 8" in m and "maxSize 2 x 4 GPUs per instance" in m for m in messages)


def test_eks_node_group_without_its_gpu_tag_is_a_violation():
    messages = [v.message for v in share_violations(gpu_stack("1", eks_node_group(4.0, None)))]
    assert any("does not record its GPUs per instance" in m for m in messages)


# -- zero or missing capacity is an error, never a skipped check -----------------------------------


def test_zero_gpu_capacity_with_a_tenant_holding_gpus():
    resources = gpu_stack("1", *fake_pool(8.0, ()), record=capacity(gpu="8"))
    [violation] = share_violations(resources)
    assert violation.resource == "all tenants"
    assert "tenants 'acme' hold requests.nvidia.com/gpu but the cluster has capacity 0" in violation.message


def test_no_gpu_pool_at_all_provides_no_gpus():
    # Declared GPUs with nothing in the stack that provides them: 0 GPUs, unless the pack's runner states the size.
    resources = gpu_stack("1", record=capacity(gpu="8"))
    [violation] = share_violations(resources)
    assert "hold requests.nvidia.com/gpu but the cluster has capacity 0" in violation.message
    assert "no GPU pool" in violation.message
    assert share_violations(resources, {"capacity": {"gpu": "8"}}) == []
    # No record, no pack capacity, no pool: nothing to measure against, so it fails.
    resources = without(gpu_stack("1"), "ConfigMap")
    messages = [v.message for v in share_violations(resources)]
    assert any(
        "hold requests.nvidia.com/gpu but the cluster has capacity 0 (0 provided by no GPU pool" in m for m in messages
    )
    assert any("hold requests.cpu but the cluster has no capacity for cpu" in m for m in messages)


def test_no_tenant_holding_a_resource_needs_no_capacity_for_it():
    resources = gpu_stack("0", *fake_pool(8.0, ()), record=capacity(gpu="0"))
    assert share_violations(resources) == []
