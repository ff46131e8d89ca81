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
# Helm's default of 300 s is too short for the operator, Prometheus, Grafana and node exporters to become
# ready on a fresh cluster that first has to pull their images.
STACK_TIMEOUT_SECONDS = 900
# The control-plane components kube-prometheus-stack scrapes by default. kind, minikube and kubeadm bind
# them to 127.0.0.1 and managed clusters (EKS) hide them, so their targets would be down and their alerts
# firing forever; `monitoring.controlPlaneScrapes` turns them on for clusters that expose them.
CONTROL_PLANE_SCRAPES = ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy")
FAKE_GPU_MONITOR = "fake-gpu-metrics"
TENANT_MONITOR_POLICY = "platform-tenant-monitors"
# CEL: no selector (own namespace), or a selector that is not `any` and names only the monitor's namespace.
OWN_NAMESPACE_ONLY = (
    "!has(object.spec.namespaceSelector) || "
    "((!has(object.spec.namespaceSelector.any) || !object.spec.namespaceSelector.any) && "
    "(!has(object.spec.namespaceSelector.matchNames) || "
    "object.spec.namespaceSelector.matchNames.all(n, n == request.namespace)))"
)
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
    # The platform's default StorageClass, for Prometheus' volume when `monitoring.storage` names none.
    storage_class: str | None = None


def prometheus_url(namespaces: PlatformNamespaces) -> str:
    return f"http://{RELEASE}-prometheus.{namespaces.monitoring}.svc"


def prometheus_storage(settings: MonitoringSettings, default_class: str | None = None) -> dict[str, Any]:
    """A PersistentVolumeClaim per Prometheus replica: billing history survives restarts."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": format_bytes(settings.storage.size)}},
    }
    storage_class = settings.storage.storage_class or default_class
    if storage_class:
        spec["storageClassName"] = storage_class
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


def kube_prometheus_stack_values(
    settings: MonitoringSettings,
    platform_namespaces: list[str] = (),
    priority_class_name: str | None = None,
    storage_class: str | None = None,
) -> dict[str, Any]:
    priority = {"priorityClassName": priority_class_name} if priority_class_name else {}
    values: dict[str, Any] = {
        "prometheus": {
            "prometheusSpec": {
                "retention": settings.retention,
                "storageSpec": prometheus_storage(settings, storage_class),
                **namespace_enforcement(list(platform_namespaces)),
                "scrapeInterval": settings.scrape_interval,
                "resources": settings.prometheus.as_kubernetes(),
                # Select every monitor and rule in the cluster, not only this release's.
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
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
        self._args = args
        self.namespace = args.namespaces.monitoring
        common = labels.recommended("monitoring", "monitoring")
        ns = self._namespace(common)
        self.crds = self._kube_prometheus_stack(ns)
        self._adapter()
        self._gpu_metrics(common)
        self._platform_rules(common)
        self._dashboards(common, ns)
        self._tenant_monitor_policy(common)
        self.prometheus_url = prometheus_url(args.namespaces)
        self.register_outputs({"prometheusUrl": self.prometheus_url, "namespace": self.namespace})

    def _namespace(self, common: dict[str, str]) -> k8s.core.v1.Namespace:
        # node-exporter needs the host's network and PID namespaces: this namespace is privileged.
        return k8s.core.v1.Namespace(
            self.namespace,
            metadata={
                "name": self.namespace,
                "labels": {**common, "pod-security.kubernetes.io/enforce": "privileged"},
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _kube_prometheus_stack(self, ns: k8s.core.v1.Namespace) -> k8s.helm.v3.Release:
        args = self._args
        return release(
            RELEASE,
            KUBE_PROMETHEUS_STACK,
            kube_prometheus_stack_values(
                args.settings, list(args.namespaces.model_dump().values()), args.priority_class_name, args.storage_class
            ),
            self.namespace,
            pulumi.ResourceOptions(parent=self, depends_on=[ns]),
            timeout_seconds=STACK_TIMEOUT_SECONDS,
        )

    def _adapter(self) -> None:
        args = self._args
        release(
            "prometheus-adapter",
            PROMETHEUS_ADAPTER,
            adapter_values(args.namespaces, args.adapter_rules, args.priority_class_name),
            self.namespace,
            pulumi.ResourceOptions(parent=self, depends_on=[self.crds]),
        )

    def _gpu_metrics(self, common: dict[str, str]) -> None:
        """The fake pool's exporter gets a ServiceMonitor; real pools get dcgm-exporter."""
        args, gpu_operator = self._args, self._args.namespaces.gpu_operator
        gpu_namespace = [args.gpu_operator_namespace] if args.gpu_operator_namespace else []
        after = pulumi.ResourceOptions(parent=self, depends_on=[self.crds, *gpu_namespace])
        if args.pool_mode == "fake":
            k8s.apiextensions.CustomResource(
                FAKE_GPU_MONITOR,
                api_version="monitoring.coreos.com/v1",
                kind="ServiceMonitor",
                metadata={"name": FAKE_GPU_MONITOR, "namespace": gpu_operator, "labels": common},
                spec={
                    "selector": {"matchLabels": {"app": "nvidia-dcgm-exporter"}},
                    "namespaceSelector": {"matchNames": [gpu_operator]},
                    "endpoints": [
                        {"port": "gpu-metrics", "interval": args.settings.scrape_interval, "honorLabels": True}
                    ],
                },
                opts=after,
            )
        else:
            release(
                "dcgm-exporter", DCGM_EXPORTER, dcgm_values(args.node_selector, args.toleration), gpu_operator, after
            )

    def _platform_rules(self, common: dict[str, str]) -> None:
        k8s.apiextensions.CustomResource(
            "platform-rules",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={"name": PLATFORM_RULE, "namespace": self.namespace, "labels": common},
            spec={"groups": self._args.rule_groups},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.crds]),
        )

    def _dashboards(self, common: dict[str, str], ns: k8s.core.v1.Namespace) -> None:
        for dashboard, model in sorted(self._args.dashboards.items()):
            k8s.core.v1.ConfigMap(
                f"dashboard-{dashboard}",
                metadata={
                    "name": f"dashboard-{dashboard}",
                    "namespace": self.namespace,
                    "labels": {**common, DASHBOARD_LABEL: "1"},
                },
                data={f"{dashboard}.json": json.dumps(model, indent=1, sort_keys=True)},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]),
            )

    def _tenant_monitor_policy(self, common: dict[str, str]) -> None:
        """Tenants' ServiceMonitors and PodMonitors may select targets in their own namespace only.

        Enforcing the namespace label keeps a tenant's series in its namespace, but Prometheus would
        still scrape whatever a tenant's monitor selects elsewhere (its NetworkPolicies admit the
        monitoring namespace). The API server itself refuses such monitors: a ValidatingAdmissionPolicy
        runs in-process, with no webhook to call.
        """
        k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
            "tenant-monitors-own-namespace",
            metadata={"name": TENANT_MONITOR_POLICY, "labels": common},
            spec={
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["monitoring.coreos.com"],
                            "apiVersions": ["*"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["servicemonitors", "podmonitors"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": OWN_NAMESPACE_ONLY,
                        "message": "a tenant's monitor may only select targets in its own namespace "
                        "(namespaceSelector.matchNames: [<its namespace>] or no namespaceSelector)",
                        "reason": "Forbidden",
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
            "tenant-monitors-own-namespace",
            metadata={"name": TENANT_MONITOR_POLICY, "labels": common},
            spec={
                "policyName": TENANT_MONITOR_POLICY,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchExpressions": [{"key": labels.TENANT, "operator": "Exists"}]}
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
