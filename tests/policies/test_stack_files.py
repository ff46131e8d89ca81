"""Whole stack files through `platformctl policy check` and the preview: the rule and the culprit are named."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from infra.cli import app
from tests.builders import STACKS, stack_config


def check(path):
    result = CliRunner().invoke(app, ["policy", "check", "--stack", "custom", "--stack-file", str(path)])
    # The console wraps long messages at spaces: undo it so a message can be matched whole.
    return result.exit_code, " ".join(result.output.split())


def gold_acme_holding(gpus: int, nodes: int = 2, per_node: int = 5) -> dict:
    """The kind stack with acme (gold) holding `gpus` GPUs of a fake pool of nodes x per_node."""
    config = stack_config("kind")
    config["gpu-platform:gpuPool"].update(nodes=[f"w{i}" for i in range(nodes)], fake={"gpusPerNode": per_node})
    config["gpu-platform:tenants"][0]["quota"] = {"gpu": gpus}
    return config


def acme_worker(config: dict) -> dict:
    return config["gpu-platform:tenants"][0]["workers"][0]


@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_stack_passes(stack):
    result = CliRunner().invoke(app, ["policy", "check", "--stack", stack])
    assert result.exit_code == 0, result.output
    assert "0 mandatory" in result.output


def test_tenant_at_40_percent_of_gpus(write_stack):
    config = stack_config("kind")
    # Two fake nodes of 5 GPUs: acme (gold) asking for 4 holds 40% of the pool's 10.
    config["gpu-platform:gpuPool"].update(nodes=["w1", "w2"], fake={"gpusPerNode": 5})
    config["gpu-platform:tenants"][0]["quota"] = {"gpu": 4}
    code, output = check(write_stack(config))
    assert code == 1
    assert "tenant-capacity-share" in output and "tenant 'acme'" in output
    assert "requests.nvidia.com/gpu=4" in output and "40% of the cluster's 10" in output


def test_hpa_that_outgrows_its_quota(write_stack):
    config = stack_config("kind")
    config["gpu-platform:tenants"][0]["workers"][0]["autoscaling"]["maxReplicas"] = 3
    code, output = check(write_stack(config))
    assert code == 1
    assert "workloads-fit-quota" in output and "namespace 'acme' of tenant 'acme'" in output
    assert "Deployment acme/llama 3 pods (maxReplicas 3 + surge 0)" in output


def test_gpu_worker_lacking_the_toleration(write_stack, monkeypatch, tmp_path):
    # A component regression that drops the toleration must be caught by the preview's policy gate.
    import components.inference_worker as worker_module

    original = worker_module.pod_spec

    def without_toleration(*args, **kwargs):
        spec = original(*args, **kwargs)
        spec.pop("tolerations", None)
        return spec

    monkeypatch.setattr(worker_module, "pod_spec", without_toleration)
    path = write_stack(stack_config("kind"))
    result = CliRunner().invoke(
        app, ["preview", "--stack", "custom", "--stack-file", str(path), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    culprits = {v["resource"] for v in report["violations"] if v["policy"] == "gpu-placement"}
    assert "Deployment acme/llama" in culprits
    assert all(set(v) == {"policy", "level", "resource", "message"} for v in report["violations"])


# -- the 30% rule cannot be loosened, hidden or inflated by the stack ---------------------------------


def test_a_stack_cannot_loosen_the_tenant_share(write_stack):
    config = gold_acme_holding(4)
    config["gpu-platform:platform"]["maxTenantShare"] = 0.9
    code, output = check(write_stack(config))
    assert code == 1 and "tenant 'acme' holds requests.nvidia.com/gpu=4" in output
    assert "above the 30% limit (3; maxTenantShare 30%, set by the policy pack)" in output


def test_renaming_the_system_namespace_keeps_the_cap_on(write_stack):
    config = gold_acme_holding(4)
    config["gpu-platform:platform"]["namespaces"] = {"system": "ops-system"}
    code, output = check(write_stack(config))
    assert code == 1 and "tenant 'acme' holds requests.nvidia.com/gpu=4" in output
    # The record is found where the stack put it: its declared cpu and memory still count.
    assert "declared 10 by the stack's capacity record ConfigMap ops-system/platform-capacity" in output


def test_a_stack_declaring_more_gpus_than_its_fake_pool_is_measured_against_the_pool(write_stack):
    # gpusPerNode 64 makes the program's count (and its capacity record) 64; fake-gpu-operator advertises 8.
    config = gold_acme_holding(3, nodes=1, per_node=8)
    config["gpu-platform:platform"]["capacity"]["nvidia.com/gpu"] = 64
    config["gpu-platform:gpuPool"]["gpusPerNode"] = 64
    code, output = check(write_stack(config))
    assert code == 1 and "tenant 'acme' holds requests.nvidia.com/gpu=3" in output
    assert "38% of the cluster's 8 (declared 64 by the stack's capacity record" in output
    assert "8 provided by the GPU pool: Helm release 'fake-gpu-operator'" in output


def test_a_program_that_reports_the_declared_count_is_still_bounded(write_stack, monkeypatch):
    # Were the program to pass the stack's 80 through unreconciled, the pack still measures the pool's 8.
    from components.platform_core import PlatformCore

    monkeypatch.setattr(PlatformCore, "_reconcile_gpus", staticmethod(lambda platform, pool_gpus: 80))
    config = gold_acme_holding(3, nodes=1, per_node=8)
    code, output = check(write_stack(config))
    assert code == 1 and "38% of the cluster's 8 (declared 80" in output


def test_zero_gpu_capacity_with_tenants_holding_gpus(write_stack, monkeypatch):
    # A pool that labels no node (config refuses an empty node list; a component regression need not):
    # fake-gpu-operator then advertises nothing, whatever the capacity record says.
    from components.gpu_node_pool import GpuNodePool

    monkeypatch.setattr(GpuNodePool, "_label_nodes", lambda self, **kwargs: [])
    code, output = check(write_stack(stack_config("kind")))
    assert code == 1 and "tenant-capacity-share" in output
    assert "hold requests.nvidia.com/gpu but the cluster has capacity 0" in output


# -- quota fit -----------------------------------------------------------------------------------------


def test_two_workers_that_fit_alone_but_not_together(write_stack):
    config = stack_config("kind")
    globex = config["gpu-platform:tenants"][1]
    globex["workers"][1]["gpus"] = 1  # the canary now also takes the namespace's only GPU
    code, output = check(write_stack(config))
    assert code == 1 and "workloads-fit-quota" in output
    assert "of tenant 'globex' needs requests.nvidia.com/gpu=2 with every workload at its largest, 1 above" in output
    assert "each may fit alone; together they do not" in output and "maxReplicas of" not in output


def test_worker_limit_above_the_limit_range_max(write_stack):
    config = stack_config("kind")
    acme_worker(config).update(memory="1Gi", memoryLimit="10Gi", autoscaling={"maxReplicas": 1})
    code, output = check(write_stack(config))
    assert code == 1 and "containers-fit-limit-range" in output
    assert (
        "Deployment acme/llama container 'engine' has a memory limit of 10Gi, 2Gi above the Container max 8Gi" in output
    )


def test_model_cache_over_the_storage_quota(write_stack):
    config = stack_config("kind")
    acme_worker(config)["cache"] = {"size": "30Gi"}
    code, output = check(write_stack(config))
    assert code == 1 and "needs requests.storage=30Gi" in output and "10Gi above" in output


def test_shipped_gpu_cloud_sizes_are_what_makes_it_fit(write_stack):
    # The engines' defaults (16Gi/32Gi, 8 cores) do not fit finance's gold namespace, as shipped before.
    config = stack_config("gpu-cloud")
    finance = next(t for t in config["gpu-platform:tenants"] if t["name"] == "finance")
    for worker in finance["workers"]:
        for key in ("cpuLimit", "memory", "memoryLimit"):
            worker.pop(key)
    code, output = check(write_stack(config))
    assert code == 1
    assert "Deployment finance/qwen-vllm container 'engine' has a memory limit of 32Gi, 8Gi above" in output
    assert "namespace 'finance' of tenant 'finance' needs requests.memory=32Gi" in output


# -- isolation and secrets, when a component regresses or a stack tries -------------------------------


def test_allow_all_ingress_from_a_component_regression(write_stack, monkeypatch):
    import components.tenant as tenant_module

    original = tenant_module.tenant_network_policies

    def with_allow_all(**kwargs):
        policies = original(**kwargs)
        policies["allow-platform-paths"]["ingress"].append({})
        return policies

    monkeypatch.setattr(tenant_module, "tenant_network_policies", with_allow_all)
    code, output = check(write_stack(stack_config("kind")))
    assert code == 1
    assert "NetworkPolicy acme/allow-platform-paths of tenant 'acme' allows ingress from anywhere" in output


def test_internet_egress_must_except_the_private_ranges(write_stack, monkeypatch):
    import components.inference_worker as worker_module

    config = stack_config("kind")
    acme_worker(config)["allowInternetEgress"] = True
    code, output = check(write_stack(config))
    assert code == 0, output  # the weights download path: 0.0.0.0/0 except private ranges, TCP 443
    monkeypatch.setattr(worker_module, "PRIVATE_RANGES", [])
    code, output = check(write_stack(config))
    assert code == 1
    assert "NetworkPolicy acme/llama-internet-egress of tenant 'acme' allows egress to anywhere" in output
    assert "ipBlock 0.0.0.0/0 reaches the cluster's private range 10.0.0.0/8" in output


def test_a_token_in_a_workers_args(write_stack):
    config = stack_config("kind")
    acme_worker(config)["extraArgs"] = ["--api-key=sk-abcdefghijklmnopqrstuvwx"]
    code, output = check(write_stack(config))
    assert code == 1 and "secrets-hygiene" in output
    assert "Deployment acme/llama container 'engine' args: argument" in output and "holds a token" in output
