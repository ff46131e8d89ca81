"""MonitoringStack: Prometheus, Grafana, GPU metrics, prometheus-adapter, rules and dashboards.

- kube-prometheus-stack 88.5.3 picks up every ServiceMonitor, PodMonitor and PrometheusRule in
  the cluster (not only its own release's), so tenant workers and the gateway are scraped;
- GPU metrics: real pools get NVIDIA's dcgm-exporter with pod attribution and a ServiceMonitor
  with `honorLabels: true` (otherwise `namespace`/`pod` would become `exported_*`); the fake pool
  gets a ServiceMonitor for fake-gpu-operator's exporter on port 9400, which ships none;
- prometheus-adapter 5.3.0 serves the per-pod `inference_queue_depth` the workers' HPAs scale on;
- recording rules, alerts and chargeback rules as one PrometheusRule; Grafana dashboards as
  ConfigMaps the Grafana sidecar loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import labels
from components.helm import DCGM_EXPORTER, KUBE_PROMETHEUS_STACK, PROMETHEUS_ADAPTER, release
from infra.config import MonitoringSettings, PlatformNamespaces

RELEASE = "kube-prometheus-stack"
DASHBOARD_LABEL = "grafana_dashboard"
# Helm's default of 300 s is too short for the operator, Prometheus, Grafana and node exporters to become
# ready on a fresh cluster that first has to pull their images.
STACK_TIMEOUT_SECONDS = 900
# The control-plane components kube-prometheus-stack scrapes by default. kind, minikube and kubeadm bind
# them to 127.0.0.1 and managed clusters (EKS) hide them, so their targets would be down and their alerts
# firing forever; `monitoring.controlPlaneScrapes` turns them on for clusters that expose them.
CONTROL_PLANE_SCRAPES = ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy")
FAKE_GPU_MONITOR = "fake-gpu-metrics"
PLATFORM_RULE = "gpu-platform"


@dataclass(frozen=True)
class MonitoringStackArgs:
    settings: MonitoringSettings
    namespaces: PlatformNamespaces
    pool_mode: str
    node_selector: dict[str, str]
    toleration: dict[str, str]
    rule_groups: list[dict[str, Any]]
    adapter_rules: dict[str, list[dict[str, Any]]]
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    priority_class_name: str | None = None
    # The namespace the GPU exporters run in, which must exist before their monitors.
    gpu_operator_namespace: pulumi.Resource | None = None


def prometheus_url(namespaces: PlatformNamespaces) -> str:
    return f"http://{RELEASE}-prometheus.{namespaces.monitoring}.svc"


def enforcement_exclusions(namespaces: PlatformNamespaces) -> list[dict[str, str]]:
    """The platform's own objects that may keep the labels their targets report.

    The GPU exporters report the `namespace` and `pod` of the pod holding each GPU (that is how GPU use is
    attributed to tenants), and the platform's rules join across every namespace; enforcing their own
    namespace on them would erase both.
    """
    group = "monitoring.coreos.com"
    return [
        {"group": group, "resource": "servicemonitors", "namespace": namespaces.gpu_operator, "name": FAKE_GPU_MONITOR},
        {"group": group, "resource": "servicemonitors", "namespace": namespaces.gpu_operator, "name": "dcgm-exporter"},
        {"group": group, "resource": "prometheusrules", "namespace": namespaces.monitoring, "name": PLATFORM_RULE},
    ]


def kube_prometheus_stack_values(
    settings: MonitoringSettings, namespaces: PlatformNamespaces, priority_class_name: str | None = None
) -> dict[str, Any]:
    priority = {"priorityClassName": priority_class_name} if priority_class_name else {}
    values: dict[str, Any] = {
        "prometheus": {
            "prometheusSpec": {
                "retention": settings.retention,
                "scrapeInterval": settings.scrape_interval,
                "resources": settings.prometheus.as_kubernetes(),
                # Select every monitor and rule in the cluster, not only this release's.
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                # A tenant's ServiceMonitor, PodMonitor or rule sees only its own namespace: its namespace
                # selector is ignored and every series it produces carries the namespace it lives in, so it
                # can neither scrape another tenant nor relabel its series into another tenant's.
                "ignoreNamespaceSelectors": True,
                "enforcedNamespaceLabel": "namespace",
                "excludedFromEnforcement": enforcement_exclusions(namespaces),
                **priority,
            }
        },
        "alertmanager": {"alertmanagerSpec": dict(priority)},
        # Grafana's own sizing lives in its subchart, whose defaults are not vendored: left at the chart's.
        "grafana": {
            "sidecar": {
                "dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": "1", "searchNamespace": "ALL"}
            },
        },
    }
    for component in CONTROL_PLANE_SCRAPES:
        values[component] = {"enabled": settings.control_plane_scrapes}
    return values


def adapter_values(
    namespaces: PlatformNamespaces, rules: dict[str, list[dict[str, Any]]], priority_class_name: str | None = None
) -> dict[str, Any]:
    return {
        "prometheus": {"url": prometheus_url(namespaces), "port": 9090},
        "rules": {"default": False, **rules},
        **({"priorityClassName": priority_class_name} if priority_class_name else {}),
    }


def dcgm_values(node_selector: dict[str, str], toleration: dict[str, str]) -> dict[str, Any]:
    return {
        "nodeSelector": node_selector,
        "tolerations": [toleration],
        "serviceMonitor": {"enabled": True, "honorLabels": True},
        "kubernetes": {
            "enablePodLabels": True,
            "podLabelAllowlistRegex": [r"^platform\.io/tenant$", r"^app\.kubernetes\.io/instance$"],
        },
    }


class MonitoringStack(pulumi.ComponentResource):
    prometheus_url: str
    namespace: str
    # The release that installs the monitoring CRDs (ServiceMonitor, PodMonitor, PrometheusRule): every
    # custom resource of those kinds, wherever it is created, depends on it.
    crds: pulumi.Resource

    def __init__(self, name: str, args: MonitoringStackArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:monitoring:MonitoringStack", name, None, opts)
        namespaces = args.namespaces
        self.namespace = namespaces.monitoring
        common = labels.recommended("monitoring", "monitoring")
        # node-exporter needs the host's network and PID namespaces: this namespace is privileged.
        ns = k8s.core.v1.Namespace(
            namespaces.monitoring,
            metadata={
                "name": namespaces.monitoring,
                "labels": {**common, "pod-security.kubernetes.io/enforce": "privileged"},
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        stack = release(
            RELEASE,
            KUBE_PROMETHEUS_STACK,
            kube_prometheus_stack_values(args.settings, namespaces, args.priority_class_name),
            namespaces.monitoring,
            in_ns,
            timeout_seconds=STACK_TIMEOUT_SECONDS,
        )
        self.crds = stack
        after_stack = pulumi.ResourceOptions(parent=self, depends_on=[stack])
        release(
            "prometheus-adapter",
            PROMETHEUS_ADAPTER,
            adapter_values(namespaces, args.adapter_rules, args.priority_class_name),
            namespaces.monitoring,
            after_stack,
        )
        gpu_namespace = [args.gpu_operator_namespace] if args.gpu_operator_namespace else []
        after_stack_and_gpu = pulumi.ResourceOptions(parent=self, depends_on=[stack, *gpu_namespace])

        if args.pool_mode == "fake":
            k8s.apiextensions.CustomResource(
                FAKE_GPU_MONITOR,
                api_version="monitoring.coreos.com/v1",
                kind="ServiceMonitor",
                metadata={"name": FAKE_GPU_MONITOR, "namespace": namespaces.gpu_operator, "labels": common},
                spec={
                    "selector": {"matchLabels": {"app": "nvidia-dcgm-exporter"}},
                    "namespaceSelector": {"matchNames": [namespaces.gpu_operator]},
                    "endpoints": [
                        {"port": "gpu-metrics", "interval": args.settings.scrape_interval, "honorLabels": True}
                    ],
                },
                opts=after_stack_and_gpu,
            )
        else:
            release(
                "dcgm-exporter",
                DCGM_EXPORTER,
                dcgm_values(args.node_selector, args.toleration),
                namespaces.gpu_operator,
                after_stack_and_gpu,
            )

        k8s.apiextensions.CustomResource(
            "platform-rules",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={"name": PLATFORM_RULE, "namespace": namespaces.monitoring, "labels": common},
            spec={"groups": args.rule_groups},
            opts=after_stack,
        )
        for dashboard, model in sorted(args.dashboards.items()):
            k8s.core.v1.ConfigMap(
                f"dashboard-{dashboard}",
                metadata={
                    "name": f"dashboard-{dashboard}",
                    "namespace": namespaces.monitoring,
                    "labels": {**common, DASHBOARD_LABEL: "1"},
                },
                data={f"{dashboard}.json": json.dumps(model, indent=1, sort_keys=True)},
                opts=in_ns,
            )
        self.prometheus_url = prometheus_url(namespaces)
        self.register_outputs({"prometheusUrl": self.prometheus_url, "namespace": self.namespace})
