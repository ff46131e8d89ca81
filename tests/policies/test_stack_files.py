"""Whole stack files through `platformctl policy check` and the preview: the rule and the culprit are named."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from infra.cli import app
from tests.conftest import STACKS, stack_config


def check(path):
    result = CliRunner().invoke(app, ["policy", "check", "--stack", "custom", "--stack-file", str(path)])
    return result.exit_code, result.output


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
    assert "autoscaling-fits-quota" in output and "HPA acme/llama of tenant 'acme'" in output


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
