"""Bad stack files are errors that name the file and the key path, with exit code 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.stack_file import ConfigError, load_stack_file, parse_stack_config, project_values
from tests.builders import STACKS, minimal_config, stack_config


def problems_of(config: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(project_values(config), "stacks/Pulumi.kind.yaml")
    return caught.value.problems


def with_tenants(*tenants: dict) -> dict:
    config = minimal_config()
    config["gpu-platform:tenants"] = list(tenants)
    return config


@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_stack_parses(stack):
    from infra.stack_file import stack_file_path

    config = load_stack_file(stack_file_path(stack))
    assert config.tenants, f"stack {stack} declares no tenants"


def test_negative_gpu_quota_names_key_path():
    config = with_tenants({"name": "a", "tier": "gold"}, {"name": "b", "tier": "gold", "quota": {"gpu": -1}})
    assert problems_of(config) == ["tenants[1].quota.gpu: must be >= 0"]


@pytest.mark.parametrize("bad", ["2Gx", "lots", "-1Gi"])
def test_malformed_or_negative_memory(bad):
    [problem] = problems_of(with_tenants({"name": "a", "tier": "gold", "quota": {"memory": bad}}))
    assert problem.startswith("tenants[0].quota.memory: ")


def test_valid_quantities_parse_and_override_tier():
    config = parse_stack_config(
        project_values(with_tenants({"name": "a", "tier": "gold", "quota": {"cpu": "500m", "memory": "2Gi"}})), "x"
    )
    quota = config.tenant_quota(config.tenants[0])
    assert str(quota.cpu) == "0.500" and quota.memory == 2 * 1024**3
    # Fields the tenant does not override come from the gold preset.
    assert quota.gpu == 2 and quota.pods == 20


@pytest.mark.parametrize("name", ["Team_A", "-a", "a-", "x" * 41, "ä"])
def test_tenant_names_must_be_dns_labels(name):
    [problem] = problems_of(with_tenants({"name": name, "tier": "gold"}))
    assert problem.startswith("tenants[0].name: ") and "not a valid tenant name" in problem


def test_duplicate_tenants():
    [problem] = problems_of(with_tenants({"name": "a", "tier": "gold"}, {"name": "a", "tier": "silver"}))
    assert problem == "tenants[1].name: duplicate tenant 'a' (first at tenants[0])"


def test_unknown_tier_lists_known_tiers():
    [problem] = problems_of(with_tenants({"name": "a", "tier": "platinum"}))
    assert problem.startswith("tenants[0].tier: unknown tier 'platinum'")
    assert "bronze, gold, silver" in problem


def test_custom_tier_defined_in_stack_is_known():
    config = with_tenants({"name": "a", "tier": "platinum"})
    config["gpu-platform:tiers"] = {"platinum": {"quota": {"gpu": 4}, "priority": 200000}}
    parsed = parse_stack_config(project_values(config), "x")
    assert parsed.tenant_quota(parsed.tenants[0]).gpu == 4


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["gpu-platform:tenants"][0].update(quotaa={}), "tenants[0].quotaa: unknown key"),
        (lambda c: c["gpu-platform:platform"].update(flavor="kind"), "platform.flavor: unknown key"),
        (lambda c: c.update({"gpu-platform:tenant": []}), "tenant: unknown key"),
        (lambda c: c["gpu-platform:platform"]["capacity"].update(cpu="-4"), "platform.capacity.cpu: must be >= 0"),
        (lambda c: c["gpu-platform:platform"].update(maxTenantShare=1.5), "platform.maxTenantShare: must be <= 1"),
        (lambda c: c["gpu-platform:platform"].update(flavour="gke"), "platform.flavour: must be one of"),
        (lambda c: c.update({"gpu-platform:gpuPool": {"taint": "nvidia.com/gpu"}}), "gpuPool.taint: "),
        (lambda c: c["gpu-platform:tenants"][0].update(environments=["prod", "prod"]), "tenants[0].environments: "),
        (lambda c: c["gpu-platform:tenants"][0].update(quota={"cpu": "64"}), "tenants[0].quota: cpuLimit"),
        (lambda c: c["gpu-platform:platform"].pop("capacity"), "platform.capacity: required key is missing"),
    ],
)
def test_error_paths(mutate, expected):
    config = minimal_config()
    mutate(config)
    problems = problems_of(config)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_namespace_collision_between_tenants():
    [problem] = problems_of(
        with_tenants({"name": "a", "tier": "gold", "environments": ["dev"]}, {"name": "a-dev", "tier": "gold"})
    )
    assert "collides with tenant 'a'" in problem


def test_provider_keys_are_passed_through():
    config = stack_config("kind")
    assert "kubernetes:context" in config
    parse_stack_config(project_values(config), "x")  # no error for a foreign namespace


def test_cli_reports_config_error_with_file_and_exit_2(write_stack):
    config = minimal_config()
    config["gpu-platform:tenants"][1]["quota"] = {"gpu": -1}
    path = write_stack(config)
    result = CliRunner().invoke(app, ["preview", "--stack", "custom", "--stack-file", str(path)])
    assert result.exit_code == 2
    assert f"{path}: tenants[1].quota.gpu: must be >= 0" in result.output.replace("\n", "")


def test_cli_unknown_stack_exits_2():
    result = CliRunner().invoke(app, ["preview", "--stack", "does-not-exist"])
    assert result.exit_code == 2
    assert "stacks/Pulumi.does-not-exist.yaml: stack file not found" in result.output.replace("\n", "")
