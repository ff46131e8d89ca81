"""The offline preview end to end: every shipped stack, report.json, schema errors, exit codes."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from infra.cli import app
from infra.preview import schema
from infra.preview.runner import EXIT_FAILED, EXIT_OK, run_preview
from tests.builders import STACKS, minimal_config


def quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_stack_previews_without_schema_errors(stack, tmp_path):
    result = run_preview(stack, out_dir=tmp_path, console=quiet())
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema"]["errors"] == []
    # Gateway API's HTTPRoute is the one kind whose schema is not vendored (no CRD copy offline).
    assert all("httproute-" in path for path in report["schema"]["unvalidated"]), report["schema"]["unvalidated"]
    assert report["schema"]["validated"] > 0
    assert result.exit_code == EXIT_OK and report["ok"] is True
    manifests = list((tmp_path / "manifests").rglob("*.yaml"))
    assert len(manifests) == report["schema"]["validated"] + len(report["schema"]["unvalidated"])


def test_report_counts_resources_by_type_component_and_tenant(tmp_path, write_stack):
    path = write_stack(minimal_config(environments=["dev", "prod"]))
    run_preview("custom", stack_file=path, out_dir=tmp_path, console=quiet())
    report = json.loads((tmp_path / "report.json").read_text())
    resources = report["resources"]
    # team-a x2, team-b, platform-system, monitoring, platform-gateway, gpu-operator
    assert resources["byType"]["kubernetes:core/v1:Namespace"] == 7
    # the overall quota and the PriorityClass quota, per tenant namespace
    assert resources["byType"]["kubernetes:core/v1:ResourceQuota"] == 6
    assert (
        resources["byComponent"]["platform:tenant:TenantStack team-a"]
        > resources["byComponent"]["platform:tenant:TenantStack team-b"]
    )
    assert set(resources["byTenant"]) == {"team-a", "team-b"}
    assert sum(resources["byType"].values()) == resources["total"]
    assert report["violations"] == []
    assert report["stackFile"] == str(path)


def test_plan_shares_sum_over_namespaces(tmp_path, write_stack):
    config = minimal_config(environments=["dev", "prod"], quota={"gpu": 1})
    path = write_stack(config)
    run_preview("custom", stack_file=path, out_dir=tmp_path, console=quiet())
    plan = json.loads((tmp_path / "report.json").read_text())["plan"]
    team_a = next(t for t in plan["tenants"] if t["name"] == "team-a")
    assert team_a["share"]["requests.nvidia.com/gpu"] == pytest.approx(2 / 8)
    assert team_a["namespaces"] == ["team-a-dev", "team-a"]


def test_no_key_value_reaches_disk(tmp_path, run_program, write_stack):
    path = write_stack(minimal_config())
    result = run_preview("custom", stack_file=path, out_dir=tmp_path, console=quiet())
    secret = result.capture.find("Secret", "tenant-api-keys", "team-a")
    key = secret.inputs["stringData"]["value"]["primary"]
    for file in tmp_path.rglob("*"):
        if file.is_file():
            assert key not in file.read_text(), f"{file} contains an API key"
            assert key[3:15] not in file.read_text()


def test_schema_errors_fail_the_preview(tmp_path, write_stack, monkeypatch):
    from components import tenant_network

    original = tenant_network.tenant_network_policies

    def broken(**kwargs):
        policies = original(**kwargs)
        policies["default-deny"] = {**policies["default-deny"], "podSelectr": {}}
        return policies

    monkeypatch.setattr("components.tenant.tenant_network_policies", broken)
    result = run_preview("custom", stack_file=write_stack(minimal_config()), out_dir=tmp_path, console=quiet())
    report = json.loads((tmp_path / "report.json").read_text())
    assert result.exit_code == EXIT_FAILED and report["ok"] is False
    assert any("podSelectr" in error["error"] for error in report["schema"]["errors"])


def test_schema_validator_reports_wrong_types():
    bad = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"}, "spec": {"hard": {"pods": [1]}}}
    errors = schema.validate(bad)
    assert errors and errors[0].startswith("spec.hard.pods")
    with pytest.raises(schema.SchemaNotFound):
        schema.validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


def test_cli_preview_with_stack_file_and_out(tmp_path, write_stack):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["preview", "--stack", "custom", "--stack-file", str(write_stack(minimal_config())), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "team-a" in result.output and "preview ok" in result.output
    quota = yaml.safe_load((out / "manifests" / "team-a" / "resourcequota-tenant-quota.yaml").read_text())
    assert quota["kind"] == "ResourceQuota" and quota["metadata"]["namespace"] == "team-a"


def test_stale_manifests_are_removed(tmp_path, write_stack):
    stale = tmp_path / "manifests" / "gone" / "deployment-old.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("kind: Deployment\n")
    run_preview("custom", stack_file=write_stack(minimal_config()), out_dir=tmp_path, console=quiet())
    assert not stale.exists()
