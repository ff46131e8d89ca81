"""`platformctl preflight --kubeconfig` against a stand-in API server: what a first `pulumi up` assumes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from infra.cli import app
from tests.builders import stack_config
from tests.monitoring.http_stub import serve
from tests.monitoring.test_usage import _kubeconfig


def cluster(nodes, classes, crds=(), ingress_classes=()):
    """An API server answering for these nodes, StorageClasses ({name: default?}), CRDs and IngressClasses."""

    def answer(path, _params):
        body = None
        if path.startswith("/api/v1/nodes/") and path.rsplit("/", 1)[1] in nodes:
            body = {"kind": "Node", "metadata": {"name": path.rsplit("/", 1)[1]}}
        elif path == "/apis/storage.k8s.io/v1/storageclasses":
            items = [
                {
                    "metadata": {
                        "name": name,
                        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"} if default else {},
                    }
                }
                for name, default in classes.items()
            ]
            body = {"kind": "StorageClassList", "items": items}
        elif (
            path.startswith("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/")
            and path.rsplit("/", 1)[1] in crds
        ):
            body = {"kind": "CustomResourceDefinition"}
        elif (
            path.startswith("/apis/networking.k8s.io/v1/ingressclasses/") and path.rsplit("/", 1)[1] in ingress_classes
        ):
            body = {"kind": "IngressClass"}
        if body is None:
            return 404, "application/json", b'{"kind": "Status", "code": 404}'
        return 200, "application/json", json.dumps(body).encode()

    return answer


def invoke_preflight(stack_file, kubeconfig):
    """`platformctl preflight --kubeconfig` on a stack file."""
    args = ["preflight", "--stack", "custom", "--stack-file", str(stack_file), "--kubeconfig", str(kubeconfig)]
    return CliRunner().invoke(app, args)


def preflight(tmp_path, write_stack, config, answer):
    with serve(answer) as (url, _):
        kubeconfig, _ = _kubeconfig(tmp_path, url, token="t")
        result = invoke_preflight(write_stack(config), kubeconfig)
    return result.exit_code, result.output


KIND_NODES = ["gpu-platform-control-plane", "gpu-platform-worker", "gpu-platform-worker2"]


def test_a_kind_cluster_as_created_passes(tmp_path, write_stack):
    code, output = preflight(tmp_path, write_stack, stack_config("kind"), cluster(KIND_NODES, {"standard": True}))
    assert code == 0, output
    assert "cluster ready" in output


@pytest.mark.parametrize(
    ("change", "answer", "problem"),
    [
        (
            lambda c: None,
            cluster(["gpu-platform-worker"], {"standard": True}),
            "gpuPool.nodes: the cluster has no node 'gpu-platform-worker2'",
        ),
        (
            lambda c: None,
            cluster(KIND_NODES, {"standard": False}),
            "platform.storageClass: the cluster has no default StorageClass",
        ),
        (
            lambda c: c["gpu-platform:platform"].update(storageClass="fast"),
            cluster(KIND_NODES, {"standard": True}),
            "platform.storageClass: the cluster has no StorageClass 'fast'",
        ),
        (
            lambda c: c.update({"gpu-platform:gateway": {"exposure": "gateway-api"}}),
            cluster(KIND_NODES, {"standard": True}),
            "gateway.exposure: gateway-api, but the cluster has no Gateway API CRDs",
        ),
        (
            lambda c: c.update({"gpu-platform:gateway": {"exposure": "ingress", "ingressClassName": "nginx"}}),
            cluster(KIND_NODES, {"standard": True}),
            "gateway.ingressClassName: the cluster has no IngressClass 'nginx'",
        ),
    ],
)
def test_what_would_fail_is_named_by_its_key(tmp_path, write_stack, change, answer, problem):
    config = stack_config("kind")
    change(config)
    code, output = preflight(tmp_path, write_stack, config, answer)
    assert code == 1 and problem in output, output


def test_gateway_api_with_crds_installed_by_the_platform_needs_none(tmp_path, write_stack):
    config = stack_config("kind")
    config["gpu-platform:gateway"] = {"exposure": "gateway-api", "gatewayApi": {"installCrds": True}}
    code, output = preflight(tmp_path, write_stack, config, cluster(KIND_NODES, {"standard": True}))
    assert code == 0, output


def test_unreachable_api_server_is_exit_2(tmp_path, write_stack):
    kubeconfig, _ = _kubeconfig(tmp_path, "http://127.0.0.1:9", token="t")
    result = invoke_preflight(write_stack(stack_config("kind")), kubeconfig)
    assert result.exit_code == 2 and "cannot reach the API server" in result.output
