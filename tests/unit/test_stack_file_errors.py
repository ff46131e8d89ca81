"""No input ever shows a traceback: preview, policy check and preflight exit 2 naming the file (and key)."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import stack_config
from tests.unit.stack_file_cases import KIND_TEXT, StackFiles, platformctl, refused


@pytest.fixture
def files(tmp_path) -> StackFiles:
    return StackFiles(tmp_path)


def test_unknown_eks_instance_type_in_the_preview(files, tmp_path):
    config = stack_config("gpu-cloud")
    config["gpu-platform:gpuPool"]["eks"]["instanceType"] = "x9.imaginary"
    path = files.config(config)
    refused(
        path,
        "gpuPool.eks.instanceType: the offline preview knows no GPU instance type 'x9.imaginary'",
        command="preview",
    )


def test_a_program_failure_is_exit_2_with_the_file(files, monkeypatch):
    from infra import program

    def broken(config):
        raise KeyError("something the checks did not foresee")

    monkeypatch.setattr(program, "build_platform", broken)
    refused(files.text(KIND_TEXT), "something the checks did not foresee")


@pytest.mark.parametrize("stack", ["../../etc/passwd", "a/b", ".hidden", ""])
def test_stack_names_that_would_leave_build(stack):
    result = platformctl("preview", "--stack", stack)
    assert result.exit_code == 2 and "error: --stack: " in result.output, result.output


def test_preflight_needs_a_region(files):
    config = stack_config("gpu-cloud")
    del config["aws:region"]
    refused(files.config(config), "aws:region: no AWS region", command="preflight")
    config["aws:region"] = "mars-north-1a"
    refused(files.config(config), "aws:region: 'mars-north-1a' is not an AWS region name", command="preflight")


def test_preflight_on_a_pool_that_is_not_eks(files):
    config = stack_config("kind")
    config["aws:region"] = "us-west-2"
    refused(files.config(config), "gpuPool.mode: preflight checks EKS GPU pools", command="preflight")


def test_preflight_when_aws_refuses_the_caller(files, monkeypatch):
    import boto3
    from botocore.exceptions import ClientError

    class Refusing:
        def describe_instance_types(self, **kwargs):
            raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "no"}}, "DescribeInstanceTypes")

    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: Refusing())
    result = platformctl("preflight", "--stack", "gpu-cloud")
    assert result.exit_code == 1 and "UnauthorizedOperation" in result.output, result.output
    assert "Traceback" not in result.output


def test_edge_values_that_parse_also_render(tmp_path):
    """Values at the limits of the checks pass the whole preview, schema validation included."""
    config = stack_config("kind")
    config["gpu-platform:tenants"][0]["name"] = "t" * 40
    config["gpu-platform:tenants"][0]["workers"][0]["name"] = "w" * 22
    config["gpu-platform:tenants"][0]["costCenter"] = "C" * 63
    config["gpu-platform:tenants"][2]["name"] = "no"
    config["gpu-platform:gateway"] = {
        "hostname": "*.example.com",
        "parentGateway": {"name": "edge.gw", "namespace": "edge"},
    }
    path = StackFiles(tmp_path).config(config)
    result = platformctl("preview", "--stack", "edge", "--stack-file", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["schema"]["errors"] == [] and report["ok"]


# -- fuzzing: mutated stack files through the CLI -------------------------------------------

HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", " ", "\n", "no", "kube-system", "default", "system:masters", "1e400", "-1", "NaN", "a" * 300]),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _replace(node, path, value):
    if not path:
        return value
    node = copy.deepcopy(node)
    parent = node
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return node


KIND_CONFIG = stack_config("kind")
KIND_PATHS = list(_paths(KIND_CONFIG))[1:]


def _check(text: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "Pulumi.fuzz.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        result = platformctl(
            "preview", "--stack", "fuzz", "--stack-file", str(path), "--out", str(Path(folder) / "out")
        )
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 2:
        assert "error: " in result.output, result.output


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(KIND_PATHS), value=HOSTILE)
def test_fuzz_replaced_values(path, value):
    _check(yaml.safe_dump({"config": _replace(KIND_CONFIG, path, value)}))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(min_value=0, max_value=len(KIND_TEXT)),
    cut=st.integers(min_value=0, max_value=40),
    insert=st.sampled_from(
        [
            "",
            ":",
            "-",
            "&a ",
            "*a",
            "[",
            "{",
            "\t",
            "\x00",
            "\xff",
            "'",
            '"',
            "\n  ",
            "<<: *a\n",
            "!!python/object:os.system ",
        ]
    ),
)
def test_fuzz_mutated_text(position, cut, insert):
    _check(KIND_TEXT[:position] + insert + KIND_TEXT[position + cut :])


def test_preflight_problems_name_file_and_key(files, monkeypatch):
    from moto import mock_aws

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    config = stack_config("gpu-cloud")
    config["gpu-platform:gpuPool"]["eks"]["instanceType"] = "g9.imaginary"
    path = files.config(config)
    with mock_aws():
        refused(path, "gpuPool.eks.instanceType: 'g9.imaginary' does not exist in us-west-2", command="preflight")
