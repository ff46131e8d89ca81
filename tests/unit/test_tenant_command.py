"""`platformctl tenant add|remove|list|show` on copies of the shipped stack files."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from infra.cli import app
from infra.tenant_edit import _yaml

STACKS = Path(__file__).resolve().parents[2] / "stacks"


@pytest.fixture
def kind(tmp_path) -> Path:
    path = tmp_path / "Pulumi.kind.yaml"
    shutil.copy(STACKS / "Pulumi.kind.yaml", path)
    return path


def run(*args, input=None):
    return CliRunner().invoke(app, ["tenant", *args], input=input)


@pytest.mark.parametrize("stack", sorted(STACKS.glob("Pulumi.*.yaml")), ids=lambda p: p.stem)
def test_round_trip_of_every_shipped_stack_is_byte_for_byte(stack):
    # An edit must change only the tenant it is about: loading and dumping changes nothing else.
    out = io.StringIO()
    _yaml().dump(_yaml().load(stack.read_text()), out)
    assert out.getvalue() == stack.read_text()


def test_add_keeps_comments_and_order_and_prints_the_plan(kind):
    before = kind.read_text()
    result = run(
        "add",
        "hooli",
        "--tier",
        "silver",
        "--cost-center",
        "cc-4004",
        "--yes",
        "--stack-file",
        str(kind),
    )
    assert result.exit_code == 0, result.output
    after = kind.read_text()
    # Everything that was there is still there, in order: only lines were added, at the end of the list.
    assert after.startswith(before.rstrip("\n"))
    added = after[len(before.rstrip("\n")) :].strip("\n").splitlines()
    assert added == [
        "    - name: hooli",
        "      tier: silver",
        "      costCenter: cc-4004",
    ]
    assert "# kind's name for the second worker" in after
    # The diff is shown, then the plan with shares and keys, then the next step.
    assert "+    - name: hooli" in result.output
    assert "hooli" in result.output and "gpu=12%" in result.output and "apiKeys=primary" in result.output
    assert "pulumi up -s kind" in result.output
    tenants = yaml.safe_load(after)["config"]["gpu-platform:tenants"]
    assert tenants[-1] == {"name": "hooli", "tier": "silver", "costCenter": "cc-4004"}


@pytest.mark.parametrize(
    "args, key",
    [
        (["add", "Hooli", "--tier", "silver"], "tenants[3].name"),
        (["add", "hooli", "--tier", "platinum"], "tenants[3].tier"),
        (["add", "acme", "--tier", "gold"], "tenants[0].name"),
        (["add", "hooli", "--tier", "gold", "--env", "dev", "--env", "staging", "--env", "prod"], "tenants[3].quota"),
        (["add", "hooli", "--tier", "silver", "--api-key", "Bad_Key"], "tenants[3].apiKeys"),
        (["remove", "nobody"], "tenants: no tenant named 'nobody'"),
    ],
)
def test_bad_input_exits_2_naming_the_key_and_leaves_the_file(kind, args, key):
    before = kind.read_bytes()
    result = run(*args, "--yes", "--stack-file", str(kind))
    assert result.exit_code == 2, result.output
    assert key in result.output and "Traceback" not in result.output
    assert kind.read_bytes() == before


def test_without_yes_it_asks(kind):
    before = kind.read_bytes()
    refused = run("add", "hooli", "--tier", "bronze", "--stack-file", str(kind), input="n\n")
    assert refused.exit_code == 1 and "nothing written" in refused.output
    assert kind.read_bytes() == before
    accepted = run("add", "hooli", "--tier", "bronze", "--stack-file", str(kind), input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "name: hooli" in kind.read_text()


def test_remove_warns_what_pulumi_up_deletes(kind):
    result = run("remove", "globex", "--yes", "--stack-file", str(kind))
    assert result.exit_code == 0, result.output
    assert "will delete tenant 'globex'" in result.output
    assert "globex-dev, globex" in result.output and "API keys (primary)" in result.output
    assert "llama-stable" in result.output
    doc = yaml.safe_load(kind.read_text())
    assert [t["name"] for t in doc["config"]["gpu-platform:tenants"]] == ["acme", "initech"]
    assert "# A canary pair" not in kind.read_text()  # the comment inside globex's entry went with it
    assert "# kind's name for the second worker" in kind.read_text()


def test_list_and_show(kind):
    listing = run("list", "--stack-file", str(kind))
    assert listing.exit_code == 0, listing.output
    assert all(name in listing.output for name in ("acme", "globex", "initech"))
    assert "apiKeys=primary,secondary" in listing.output
    shown = run("show", "globex", "--stack-file", str(kind))
    assert shown.exit_code == 0, shown.output
    assert "namespaces: globex-dev, globex" in shown.output and "cpu 1/2" in shown.output
    missing = run("show", "nobody", "--stack-file", str(kind))
    assert missing.exit_code == 2 and "no tenant named 'nobody'" in missing.output


def test_tenants_stored_as_json_are_left_to_a_human(tmp_path):
    path = tmp_path / "Pulumi.json.yaml"
    path.write_text(
        "config:\n"
        "  gpu-platform:platform: {flavour: kind, capacity: {cpu: '8', memory: 16Gi}}\n"
        "  gpu-platform:gpuPool: {nodes: [n1]}\n"
        '  gpu-platform:tenants: \'[{"name": "a", "tier": "gold"}]\'\n'
    )
    before = path.read_bytes()
    result = run("add", "b", "--tier", "gold", "--yes", "--stack-file", str(path))
    assert result.exit_code == 2 and "JSON string" in result.output
    assert path.read_bytes() == before


def test_all_tenants_together_stay_within_capacity(kind):
    # kind: 8 GPUs; acme 2, globex 2 (two namespaces), initech 1. One more gold (2) fits, two do not.
    assert run("add", "hooli", "--tier", "gold", "--yes", "--stack-file", str(kind)).exit_code == 0
    before = kind.read_bytes()
    result = run("add", "umbrella", "--tier", "gold", "--yes", "--stack-file", str(kind))
    assert result.exit_code == 2, result.output
    assert "all tenants together would hold 112% of the cluster's gpu" in result.output
    assert kind.read_bytes() == before
