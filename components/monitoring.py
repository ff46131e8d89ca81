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
from infra.quantity import format_bytes

RELEASE = "kube-prometheus-stack"
DASHBOARD_LABEL = "grafana_dashboard"


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


def prometheus_url(namespaces: PlatformNamespaces) -> str:
    return f"http://{RELEASE}-prometheus.{namespaces.monitoring}.svc"


def prometheus_storage(settings: MonitoringSettings) -> dict[str, Any]:
    """A PersistentVolumeClaim per Prometheus replica: billing history survives restarts."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": format_bytes(settings.storage.size)}},
    }
    if settings.storage.storage_class:
        spec["storageClassName"] = settings.storage.storage_class
    return {"volumeClaimTemplate": {"spec": spec}}


def namespace_enforcement(platform_namespaces: list[str]) -> dict[str, Any]:
    """Series from tenant-owned monitors carry their own namespace, whatever they relabel or honour.

    Billing and usage count only the platform's jobs; this stops a tenant's ServiceMonitor from
    posing as one of them for another tenant's namespace. The platform's own monitors and rules
    (kube-state-metrics, DCGM, the gateway) keep the `namespace` label they report.
    """
    return {
        "enforcedNamespaceLabel": "namespace",
        "excludedFromEnforcement": [
            {"group": "monitoring.coreos.com", "resource": resource, "namespace": namespace}
            for namespace in sorted(platform_namespaces)
            for resource in ("servicemonitors", "podmonitors", "prometheusrules")
        ],
    }


def kube_prometheus_stack_values(settings: MonitoringSettings, platform_namespaces: list[str] = ()) -> dict[str, Any]:
    return {
        "prometheus": {
            "prometheusSpec": {
                "retention": settings.retention,
                "storageSpec": prometheus_storage(settings),
                **namespace_enforcement(list(platform_namespaces)),
                "scrapeInterval": settings.scrape_interval,
                "resources": settings.prometheus.as_kubernetes(),
                # Select every monitor and rule in the cluster, not only this release's.
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
            }
        },
        # Grafana's own sizing lives in its subchart, whose defaults are not vendored: left at the chart's.
        "grafana": {
            "sidecar": {
                "dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": "1", "searchNamespace": "ALL"}
            },
        },
    }


def adapter_values(namespaces: PlatformNamespaces, rules: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "prometheus": {"url": prometheus_url(namespaces), "port": 9090},
        "rules": {"default": False, **rules},
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
            kube_prometheus_stack_values(args.settings, list(namespaces.model_dump().values())),
            namespaces.monitoring,
            in_ns,
        )
        after_stack = pulumi.ResourceOptions(parent=self, depends_on=[stack])
        release(
            "prometheus-adapter",
            PROMETHEUS_ADAPTER,
            adapter_values(namespaces, args.adapter_rules),
            namespaces.monitoring,
            after_stack,
        )

        if args.pool_mode == "fake":
            k8s.apiextensions.CustomResource(
                "fake-gpu-metrics",
                api_version="monitoring.coreos.com/v1",
                kind="ServiceMonitor",
                metadata={"name": "fake-gpu-metrics", "namespace": namespaces.gpu_operator, "labels": common},
                spec={
                    "selector": {"matchLabels": {"app": "nvidia-dcgm-exporter"}},
                    "namespaceSelector": {"matchNames": [namespaces.gpu_operator]},
                    "endpoints": [
                        {"port": "gpu-metrics", "interval": args.settings.scrape_interval, "honorLabels": True}
                    ],
                },
                opts=after_stack,
            )
        else:
            release(
                "dcgm-exporter",
                DCGM_EXPORTER,
                dcgm_values(args.node_selector, args.toleration),
                namespaces.gpu_operator,
                after_stack,
            )

        k8s.apiextensions.CustomResource(
            "platform-rules",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={"name": "gpu-platform", "namespace": namespaces.monitoring, "labels": common},
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
