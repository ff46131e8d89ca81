"""One throwaway control plane per shipped stack: nodes as that stack's cluster has them, the
program applied in engine order, then the tests of test_stack.py ask it what a user would.

Run through `make e2e` (e2e/run.sh), which builds the binaries and creates the network
namespace; these tests refuse to start a control plane outside one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from e2e import ingress
from e2e.checks import Deployed
from e2e.cli_checks import platformctl
from e2e.cluster import ControlPlane
from e2e.engine import Engine
from e2e.kube import Kube
from e2e.nodes import for_stack
from e2e.releases import Releases
from e2e.storage import Provisioner
from e2e.tests.known_defects import KNOWN_DEFECTS
from infra.preview.runner import capture_stack, load

REPO = Path(__file__).resolve().parents[2]
STACKS = ["minikube", "kind", "onprem", "gpu-cloud"]
# AWS resources (the EKS node group, its IAM role) are not created: the nodes they would bring
# are simulated from the node group's inputs instead (e2e/nodes.py).
SKIPPED_TYPES = ("aws:",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Known program defects are strict xfails: when a fix lands the test passes, the
    # xfail turns into a failure, and the entry must be removed from known_defects.py.
    for item in items:
        stack = getattr(item, "callspec", None) and item.callspec.params.get("deployed")
        reason = KNOWN_DEFECTS.get((stack, item.originalname))
        if reason:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    if os.environ.get("E2E_BIN"):
        return Path(os.environ["E2E_BIN"])
    out = subprocess.run([str(REPO / "e2e" / "build.sh")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def _wait_nodes_ready(kube: Kube, names: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = {n["metadata"]["name"]: n for n in kube.list("v1", "Node")}
        ready = [
            name
            for name in names
            if name in nodes
            and any(c["type"] == "Ready" and c["status"] == "True" for c in nodes[name]["status"].get("conditions", []))
            # The node lifecycle controller lifts the not-ready taint admission put on at create.
            and not any(t["key"].startswith("node.kubernetes.io/") for t in nodes[name]["spec"].get("taints", []))
        ]
        if len(ready) == len(names):
            return
        time.sleep(0.5)
    raise RuntimeError(f"kwok nodes not Ready after {timeout:.0f} s: {sorted(set(names) - set(ready))}")


@pytest.fixture(scope="module", params=STACKS)
def deployed(request, bin_dir: Path):
    stack = request.param
    _, raw, config = load(stack, None)
    capture = capture_stack(stack, raw)
    work = Path(tempfile.mkdtemp(prefix=f"e2e-{stack}-"))
    plane = ControlPlane(bin_dir, work)
    plane.start()
    kube = Kube(plane.server, plane.pki)
    try:
        nodes = for_stack(config, capture)
        for node in nodes:
            kube.create(node)
            # What a kubelet reports at registration; set again in case create dropped status.
            kube.merge_patch("v1", "Node", node["metadata"]["name"], {"status": node["status"]}, subresource="status")
        _wait_nodes_ready(kube, [n["metadata"]["name"] for n in nodes])
        storage = Provisioner(kube, config.platform.flavour)
        storage.install()
        ingress.install(kube, config.platform.flavour)
        # What the README tells an operator to run before the first `pulumi up`, once the documented
        # prerequisites (nodes, a StorageClass) are in place and nothing of the stack is.
        preflight = platformctl("preflight", "--stack", stack, "--kubeconfig", str(plane.kubeconfig_path))
        releases = Releases(kube)
        controllers = [releases, storage]
        result = Engine(stack, kube, releases, controllers, skip_types=SKIPPED_TYPES).apply(capture)
        (work / "apply-report.txt").write_text(result.report())
        yield Deployed(stack, config, capture, kube, result, controllers, plane.kubeconfig_path, preflight)
    finally:
        kube.close()
        plane.stop()
        # Keep the logs and the apply report; etcd's data (~60 MB a stack) is of no use afterwards.
        shutil.rmtree(work / "etcd", ignore_errors=True)
        print(f"\ne2e {stack}: logs in {work}")
