"""Stand-ins for the program's Helm releases (their charts cannot be downloaded here).

A release does, on this cluster, only what others rely on:
- it creates its namespace when `createNamespace` is set, and fails like `helm install` when the
  namespace is missing otherwise;
- it installs its chart's CRDs (the vendored copies in components/vendor/crds/) and waits until
  they are Established: a custom resource exists only once its installer has run;
- it fails like `helm install` when its chart renders a custom resource whose CRD is not there
  yet (dcgm-exporter's ServiceMonitor, on by default);
- the GPU charts' controllers are simulated after every wave: the fake GPU operator gives the
  nodes of its pool `nvidia.com/gpu` capacity; the NVIDIA device plugin does so on the nodes its
  DaemonSet would run on (nodeSelector and tolerations), with time-slicing replicas applied.
Their own Deployments and DaemonSets are out of scope (no chart templates here).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import yaml

from e2e.kube import ApiError, Kube

# The repository's own copy of the vendored chart data (../shared/vendor on the dev machines).
VENDOR = Path(__file__).resolve().parents[1] / "components" / "vendor"
PHYSICAL_GPUS = "e2e.gpu-platform.io/physical-gpus"  # a node's hardware, set by the harness
GPU = "nvidia.com/gpu"

# chart name -> the CRD files its `crds/` directory installs (those that are vendored).
CHART_CRDS = {
    "kube-prometheus-stack": [
        "crds/crd-servicemonitors.yaml",
        "crds/crd-podmonitors.yaml",
        "crds/crd-prometheusrules.yaml",
    ],
}


def chart_name(release: dict[str, Any]) -> str:
    return release["chart"].rstrip("/").split("/")[-1]


def chart_defaults(chart: str) -> dict[str, Any]:
    path = VENDOR / "charts" / chart / "values.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def rendered_custom_resources(chart: str, values: dict[str, Any]) -> list[tuple[str, str]]:
    """(apiVersion, kind) of custom resources the chart's templates render with these values."""
    if chart == "dcgm-exporter":
        monitor = {**chart_defaults(chart).get("serviceMonitor", {}), **values.get("serviceMonitor", {})}
        if monitor.get("enabled"):
            return [(monitor.get("apiVersion", "monitoring.coreos.com/v1"), "ServiceMonitor")]
    return []


def tolerates(tolerations: list[dict[str, Any]], taints: list[dict[str, Any]]) -> bool:
    for taint in taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(_tolerates(t, taint) for t in tolerations):
            return False
    return True


def _tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint["key"]
    return toleration.get("key") == taint["key"] and toleration.get("value", "") == taint.get("value", "")


class Releases:
    def __init__(self, kube: Kube):
        self.kube = kube
        self.installed: dict[str, dict[str, Any]] = {}  # chart name -> release inputs
        self._lock = threading.Lock()

    def install(self, release: dict[str, Any]) -> None:
        chart, namespace = chart_name(release), release.get("namespace", "default")
        if not self.kube.exists("v1", "Namespace", namespace):
            if not release.get("createNamespace"):
                raise ApiError(
                    404,
                    f'helm install {release.get("name")}: create: failed to create: namespaces "{namespace}" not found',
                )
            self.kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        for rel in CHART_CRDS.get(chart, []):
            for doc in yaml.safe_load_all((VENDOR / rel).read_text()):
                if doc:
                    self.kube.apply(doc, field_manager="helm")
                    self._wait_established(doc["metadata"]["name"])
        for api_version, kind in rendered_custom_resources(chart, release.get("values", {})):
            try:
                self.kube.resource(api_version, kind)
            except ApiError:
                raise ApiError(
                    400,
                    f"helm install {release.get('name')}: unable to build kubernetes objects from release manifest: "
                    f'resource mapping not found for kind "{kind}" in version "{api_version}": ensure CRDs are installed first',
                ) from None
        with self._lock:
            self.installed[chart] = release

    def _wait_established(self, crd: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd).get("status", {})
            if any(c["type"] == "Established" and c["status"] == "True" for c in status.get("conditions") or []):
                return
            time.sleep(0.2)
        raise ApiError(500, f"CRD {crd} not Established after {timeout:.0f} s")

    # -- the GPU charts' controllers ---------------------------------------------------------
    def reconcile(self) -> None:
        for node in self.kube.list("v1", "Node"):
            gpus = self._advertised_gpus(node)
            if gpus is not None and str(node["status"].get("capacity", {}).get(GPU)) != str(gpus):
                patch = {"status": {"capacity": {GPU: str(gpus)}, "allocatable": {GPU: str(gpus)}}}
                self.kube.merge_patch("v1", "Node", node["metadata"]["name"], patch, subresource="status")

    def _advertised_gpus(self, node: dict[str, Any]) -> int | None:
        labels = node["metadata"].get("labels", {})
        operator = self.installed.get("fake-gpu-operator")
        if operator:
            # run-ai's status-updater: nodes labelled with a pool of its topology get that pool's GPUs.
            topology = operator.get("values", {}).get("topology", {})
            key = topology.get("nodePoolLabelKey", "run.ai/simulated-gpu-node-pool")
            pool = topology.get("nodePools", {}).get(labels.get(key, ""))
            if pool:
                return int(pool.get("gpuCount", 0))
        plugin = self.installed.get("nvidia-device-plugin")
        physical = node["metadata"].get("annotations", {}).get(PHYSICAL_GPUS)
        if plugin and physical:
            values = plugin.get("values", {})
            selector = values.get("nodeSelector", {})
            if any(labels.get(k) != v for k, v in selector.items()):
                return None
            if not tolerates(values.get("tolerations", []), node["spec"].get("taints", [])):
                return None
            return int(physical) * time_slicing_replicas(values)
        return None


def time_slicing_replicas(values: dict[str, Any]) -> int:
    config = values.get("config", {})
    text = config.get("map", {}).get(config.get("default", "default"))
    if not text:
        return 1
    sharing = (yaml.safe_load(text) or {}).get("sharing", {}).get("timeSlicing", {})
    for resource in sharing.get("resources", []):
        if resource.get("name") == GPU:
            return int(resource.get("replicas", 1))
    return 1
