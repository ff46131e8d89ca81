"""`platformctl preflight` against moto's EC2: offered, not offered, no GPUs, unknown type."""

from __future__ import annotations

import pytest
from moto import mock_aws

from infra.preflight import preflight
from infra.stack_file import parse_stack_config, project_values
from tests.builders import stack_config


def eks_config(**eks):
    raw = stack_config("gpu-cloud")
    raw["gpu-platform:gpuPool"]["eks"].update(eks)
    return parse_stack_config(project_values(raw), "stacks/Pulumi.gpu-cloud.yaml")


@pytest.fixture(autouse=True)
def aws(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    with mock_aws():
        yield


def test_gpu_type_offered_in_configured_zones():
    result = preflight(eks_config(), "us-west-2")
    assert result.ok, result.problems
    assert result.gpus_per_node == 4 and "A10G" in result.gpu_name
    assert result.gpu_capacity == 16
    assert {"us-west-2a", "us-west-2b"} <= set(result.offered_zones)


def test_zone_where_the_type_is_not_offered():
    result = preflight(eks_config(availabilityZones=["us-west-2a", "us-west-2d"]), "us-west-2")
    assert not result.ok
    assert any("not offered in us-west-2d" in problem for problem in result.problems)


def test_instance_type_without_gpus():
    result = preflight(eks_config(instanceType="m5.large"), "us-west-2")
    assert any("has no GPUs" in problem for problem in result.problems)


def test_instance_type_that_does_not_exist():
    result = preflight(eks_config(instanceType="g9.imaginary"), "us-west-2")
    assert result.problems == ["gpuPool.eks.instanceType: 'g9.imaginary' does not exist in us-west-2"]


def test_declared_capacity_mismatch_is_reported():
    # For instance types the offline table knows, the stack file itself is refused (test_first_up); for
    # others only AWS can tell: g4dn.12xlarge has 4 GPUs, so 2 nodes provide 8, not the 16 declared.
    result = preflight(eks_config(maxSize=2, desiredSize=2, instanceType="g4dn.12xlarge"), "us-west-2")
    assert any("declared 16" in problem and "provide 8" in problem for problem in result.problems), result.problems


def test_declaring_more_gpus_than_a_known_pool_is_refused_offline():
    from infra.stack_file import ConfigError

    with pytest.raises(ConfigError) as caught:
        eks_config(maxSize=2, desiredSize=2)
    assert "platform.capacity.nvidia.com/gpu: 16 GPUs declared, but the eks pool provides 8" in str(caught.value)


def test_cli_preflight_exit_codes():
    from typer.testing import CliRunner

    from infra.cli import app

    ok = CliRunner().invoke(app, ["preflight", "--stack", "gpu-cloud"])
    assert ok.exit_code == 0, ok.output
    assert "4 GPU(s) per node" in ok.output and "16 GPUs" in ok.output
    wrong = CliRunner().invoke(app, ["preflight", "--stack", "kind", "--region", "us-west-2"])
    assert wrong.exit_code == 2 and "EKS" in wrong.output
