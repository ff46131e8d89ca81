"""Pinned Helm charts and how the components install them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from policies.platform_rules import contract


@dataclass(frozen=True)
class Chart:
    name: str  # the chart's name, as vendored under components/vendor/charts/<name>
    version: str
    repo: str | None = None  # classic Helm repository; None when `ref` is an OCI address
    ref: str | None = None

    @property
    def chart(self) -> str:
        return self.ref or self.name


FAKE_GPU_OPERATOR = Chart(
    contract.FAKE_GPU_OPERATOR_CHART, "0.2.0", ref="oci://ghcr.io/run-ai/fake-gpu-operator/fake-gpu-operator"
)
NVIDIA_DEVICE_PLUGIN = Chart(
    contract.NVIDIA_DEVICE_PLUGIN_CHART, "0.20.0", "https://nvidia.github.io/k8s-device-plugin"
)
KUBE_PROMETHEUS_STACK = Chart("kube-prometheus-stack", "88.5.3", "https://prometheus-community.github.io/helm-charts")
PROMETHEUS_ADAPTER = Chart("prometheus-adapter", "5.3.0", "https://prometheus-community.github.io/helm-charts")
DCGM_EXPORTER = Chart(contract.DCGM_EXPORTER_CHART, "4.8.2", "https://nvidia.github.io/dcgm-exporter/helm-charts")


def release(
    name: str,
    chart: Chart,
    values: dict[str, Any],
    namespace: str,
    opts: pulumi.ResourceOptions,
    *,
    timeout_seconds: int | None = None,
) -> k8s.helm.v3.Release:
    """A Helm release named exactly `name` (no random suffix: other objects address its Services)."""
    return k8s.helm.v3.Release(
        name,
        name=name,
        chart=chart.chart,
        version=chart.version,
        namespace=namespace,
        create_namespace=True,
        values=values,
        **({"timeout": timeout_seconds} if timeout_seconds else {}),
        **({"repository_opts": {"repo": chart.repo}} if chart.repo else {}),
        opts=opts,
    )
