"""GatewayStack: the tenant-aware OpenAI-compatible gateway and its Redis.

Namespace; Redis (components/gateway_redis.py: a password-protected StatefulSet reachable only from
the gateway); the gateway Deployment (>= 2 replicas, probes, PDB, HPA on its in-flight requests)
mounting a Secret with the tenants' key hashes, limits and routes; a Service, a ServiceMonitor;
NetworkPolicies and EndpointSlice access (components/gateway_network.py); and exposure as a
ClusterIP Service (default), a Gateway API HTTPRoute or an Ingress of any class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from components import labels
from components.gateway_network import (
    ENDPOINTSLICE_RULES,
    METRICS_PORT,
    PORT,
    REDIS_PORT,
    TOKEN_DIR,
    gateway_network_policies,
    service_account_volume,
)
from components.gateway_redis import REDIS_AUTH_SECRET, REDIS_PASSWORD_KEY, password_env, redis_statefulset_spec
from components.metrics_catalog import GATEWAY_INFLIGHT_METRIC
from components.pod_security import container_security, pod_security
from infra.config import GatewayStackSettings, Images, PlatformNamespaces

CONFIG_FILE = "gateway.json"
CONFIG_DIR = "/etc/gateway"
PRE_STOP_SECONDS = 5
# Gateway API v1.6.1, standard channel: the kinds an HTTPRoute exposure needs (vendored, see SOURCES.md).
GATEWAY_API_CRDS = Path(__file__).resolve().parent / "vendor" / "crds" / "gateway-api"
GATEWAY_API_KINDS = ("gatewayclasses", "gateways", "httproutes", "referencegrants")
# pulumi-kubernetes waits for an Ingress to report a load-balancer address unless told not to.
SKIP_AWAIT = "pulumi.com/skipAwait"


@dataclass(frozen=True)
class GatewayStackArgs:
    settings: GatewayStackSettings
    images: Images
    namespaces: PlatformNamespaces
    # The gateway document (infra.gateway_document), an Output because key hashes are outputs.
    document: pulumi.Input[dict[str, Any]]
    # What installs the monitoring CRDs (the kube-prometheus-stack release); None renders no monitor and no
    # metric-driven HPA, because without it neither their CRD nor the metrics adapter exists.
    monitoring_crds: pulumi.Resource | None = None
    # The platform-critical PriorityClass and the resources it must exist after.
    priority_class_name: str | None = None
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    # The platform's default StorageClass, for Redis when it names none itself.
    storage_class: str | None = None


class GatewayStack(pulumi.ComponentResource):
    namespace: str
    service_url: str

    def __init__(self, name: str, args: GatewayStackArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:gateway:GatewayStack", name, None, opts)
        settings, namespace = args.settings, args.namespaces.gateway
        self.namespace = namespace
        ns = k8s.core.v1.Namespace(
            namespace,
            metadata={
                "name": namespace,
                "labels": {
                    **labels.recommended("gateway", "gateway"),
                    "pod-security.kubernetes.io/enforce": "restricted",
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._args = args
        self._in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        self._pods_after = pulumi.ResourceOptions(parent=self, depends_on=[ns, *args.depends_on])
        self._priority = {"priorityClassName": args.priority_class_name} if args.priority_class_name else {}
        gateway_labels = labels.recommended("gateway", "gateway", instance="gateway")
        redis_labels = labels.recommended("redis", "rate-limit-store", instance="gateway-redis")
        gateway_selector = {k: gateway_labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
        redis_selector = {k: redis_labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}

        auth = self._redis_auth(redis_labels)
        redis_url = self._redis(settings, args.images, redis_labels, redis_selector, auth)
        config = self._config_secret(args.document, gateway_labels)
        deployment = self._gateway(settings, args.images, gateway_labels, gateway_selector, redis_url, [config, auth])
        self._gateway_service(selector=gateway_selector, common=gateway_labels)
        self._disruption_budget(gateway_selector, gateway_labels, deployment)
        if args.monitoring_crds is not None:
            self._autoscaler(settings, gateway_labels, deployment)
            self._service_monitor(gateway_selector, gateway_labels, args.monitoring_crds)
        for policy, spec in gateway_network_policies(
            namespace, args.namespaces.monitoring, gateway_selector, redis_selector, settings.api_server_cidrs
        ).items():
            k8s.networking.v1.NetworkPolicy(
                f"gateway-{policy}", metadata=self._meta(policy, gateway_labels), spec=spec, opts=self._in_ns
            )
        self._expose(settings, gateway_labels)
        self.service_url = f"http://gateway.{namespace}.svc.cluster.local"
        self.register_outputs({"serviceUrl": self.service_url, "namespace": namespace})

    def _meta(self, name: str, common: dict[str, str]) -> dict[str, Any]:
        return {"name": name, "namespace": self.namespace, "labels": common}

    def _redis_auth(self, common: dict[str, str]) -> k8s.core.v1.Secret:
        """Redis' password: generated, kept in a Secret that only the gateway and Redis read."""
        password = random.RandomPassword(
            "gateway-redis-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        return k8s.core.v1.Secret(
            "gateway-redis-auth",
            metadata=self._meta(REDIS_AUTH_SECRET, common),
            type="Opaque",
            string_data={REDIS_PASSWORD_KEY: pulumi.Output.secret(password.result)},
            opts=self._in_ns,
        )

    def _redis(
        self,
        settings: GatewayStackSettings,
        images: Images,
        common: dict[str, str],
        selector: dict[str, str],
        auth: k8s.core.v1.Secret,
    ) -> str:
        storage_class = settings.redis.storage_class or self._args.storage_class
        k8s.apps.v1.StatefulSet(
            "gateway-redis",
            metadata=self._meta("redis", common),
            spec=redis_statefulset_spec(settings.redis, images.redis, common, selector, self._priority, storage_class),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*self._pods_after.depends_on, auth]),
        )
        k8s.core.v1.Service(
            "gateway-redis",
            metadata=self._meta("redis", common),
            spec={
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis"}],
            },
            opts=self._in_ns,
        )
        # The password is alphanumeric, so it needs no escaping inside the URL.
        return f"redis://:$(REDIS_PASSWORD)@redis.{self.namespace}.svc.cluster.local:{REDIS_PORT}/0"

    def _discovery_access(self, common: dict[str, str]) -> None:
        """A ServiceAccount that may get/list/watch endpointslices in every namespace, and nothing else."""
        k8s.core.v1.ServiceAccount(
            "gateway",
            metadata=self._meta("gateway", common),
            automount_service_account_token=False,
            opts=self._in_ns,
        )
        role = f"{self.namespace}-endpointslices-reader"
        k8s.rbac.v1.ClusterRole(
            "gateway-endpointslices",
            metadata={"name": role, "labels": common},
            rules=ENDPOINTSLICE_RULES,
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.rbac.v1.ClusterRoleBinding(
            "gateway-endpointslices",
            metadata={"name": role, "labels": common},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            subjects=[{"kind": "ServiceAccount", "name": "gateway", "namespace": self.namespace}],
            opts=self._in_ns,
        )

    def _config_secret(self, document: pulumi.Input[dict[str, Any]], common: dict[str, str]) -> k8s.core.v1.Secret:
        """The gateway's document: key hashes, limits and routes per tenant, mounted and reloaded on change."""
        return k8s.core.v1.Secret(
            "gateway-config",
            metadata=self._meta("gateway-config", common),
            string_data=pulumi.Output.from_input(document).apply(
                lambda doc: {CONFIG_FILE: json.dumps(doc, indent=1, sort_keys=True)}
            ),
            opts=self._in_ns,
        )

    def _gateway(
        self, settings, images, common, selector, redis_url: str, secrets: list[k8s.core.v1.Secret]
    ) -> k8s.apps.v1.Deployment:
        self._discovery_access(common)
        env = {
            "GATEWAY_CONFIG_FILE": f"{CONFIG_DIR}/{CONFIG_FILE}",
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_FAIL_CLOSED": str(settings.fail_closed).lower(),
            "GATEWAY_MAX_BODY_BYTES": str(settings.max_body_bytes),
            "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": str(settings.upstream_timeout_seconds),
            "GATEWAY_HOST": "0.0.0.0",
            "GATEWAY_PORT": str(PORT),
            "GATEWAY_METRICS_PORT": str(METRICS_PORT),
            # Streams still running this long after SIGTERM end with an SSE error event the client can act on.
            "GATEWAY_DRAIN_SECONDS": str(int(settings.upstream_timeout_seconds)),
        }
        return k8s.apps.v1.Deployment(
            "gateway",
            metadata=self._meta("gateway", common),
            spec={
                "replicas": settings.replicas,
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": common},
                    "spec": {
                        **self._priority,
                        "serviceAccountName": "gateway",
                        # The token is mounted explicitly below (the EndpointSlice watch needs it).
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security(10001),
                        # Service links would inject GATEWAY_PORT=tcp://… and collide with the settings prefix.
                        "enableServiceLinks": False,
                        # preStop, then the drain (as long as the upstream timeout), then the gateway's last wait of
                        # 5 s for replies to flush, and a margin: the kubelet never kills a stream mid-event.
                        "terminationGracePeriodSeconds": int(settings.upstream_timeout_seconds) + PRE_STOP_SECONDS + 10,
                        "topologySpreadConstraints": [
                            {
                                "maxSkew": 1,
                                "topologyKey": "kubernetes.io/hostname",
                                "whenUnsatisfiable": "ScheduleAnyway",
                                "labelSelector": {"matchLabels": selector},
                            }
                        ],
                        "containers": [
                            {
                                "name": "gateway",
                                "image": images.gateway,
                                "ports": [
                                    {"name": "http", "containerPort": PORT},
                                    {"name": "metrics", "containerPort": METRICS_PORT},
                                ],
                                # REDIS_PASSWORD first: GATEWAY_REDIS_URL refers to it as $(REDIS_PASSWORD).
                                "env": [
                                    password_env("REDIS_PASSWORD"),
                                    *({"name": key, "value": value} for key, value in env.items()),
                                ],
                                "resources": settings.resources.as_kubernetes(),
                                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
                                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
                                "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
                                "securityContext": container_security(),
                                "volumeMounts": [
                                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                                    {"name": "kube-api-access", "mountPath": TOKEN_DIR, "readOnly": True},
                                ],
                            }
                        ],
                        # A mounted Secret is updated in place (no subPath), so the gateway reloads keys without a restart.
                        "volumes": [
                            {"name": "config", "secret": {"secretName": "gateway-config"}},
                            service_account_volume(),
                        ],
                    },
                },
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*self._pods_after.depends_on, *secrets], ignore_changes=["spec.replicas"]
            ),
        )

    def _gateway_service(self, *, selector: dict[str, str], common: dict[str, str]) -> None:
        k8s.core.v1.Service(
            "gateway",
            metadata=self._meta("gateway", common),
            spec={
                "type": "ClusterIP",
                "selector": selector,
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http"},
                    {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"},
                ],
            },
            opts=self._in_ns,
        )

    def _disruption_budget(self, selector, common, deployment: k8s.apps.v1.Deployment) -> None:
        k8s.policy.v1.PodDisruptionBudget(
            "gateway",
            metadata=self._meta("gateway", common),
            spec={"minAvailable": 1, "selector": {"matchLabels": selector}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]),
        )

    def _autoscaler(self, settings: GatewayStackSettings, common, deployment: k8s.apps.v1.Deployment) -> None:
        """Scales on requests in flight per replica, served by prometheus-adapter from the gateway's own gauge."""
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            "gateway",
            metadata=self._meta("gateway", common),
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"},
                "minReplicas": settings.replicas,
                "maxReplicas": settings.max_replicas,
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": GATEWAY_INFLIGHT_METRIC},
                            "target": {
                                "type": "AverageValue",
                                "averageValue": str(settings.target_inflight_per_replica),
                            },
                        },
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]),
        )

    def _service_monitor(self, selector, common, crds: pulumi.Resource) -> None:
        k8s.apiextensions.CustomResource(
            "gateway-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=self._meta("gateway", common),
            spec={
                "selector": {"matchLabels": selector},
                "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*self._in_ns.depends_on, crds]),
        )

    def _gateway_api_crds(self) -> list[pulumi.Resource]:
        """The standard-channel Gateway API CRDs, for clusters whose controller does not install them."""
        crds = []
        for kind in GATEWAY_API_KINDS:
            crd = yaml.safe_load((GATEWAY_API_CRDS / f"gateway.networking.k8s.io_{kind}.yaml").read_text())
            crds.append(
                k8s.apiextensions.v1.CustomResourceDefinition(
                    f"gateway-api-{kind}",
                    metadata=crd["metadata"],
                    spec=crd["spec"],
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )
        return crds

    def _expose(self, settings: GatewayStackSettings, common: dict[str, str]) -> None:
        backend = {"name": "gateway", "port": 80}
        if settings.exposure == "gateway-api":
            parent = settings.parent_gateway
            ref = {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": parent.name,
                "namespace": parent.namespace,
            }
            if parent.section_name:
                ref["sectionName"] = parent.section_name
            crds = self._gateway_api_crds() if settings.gateway_api.install_crds else []
            k8s.apiextensions.CustomResource(
                "gateway-route",
                api_version="gateway.networking.k8s.io/v1",
                kind="HTTPRoute",
                metadata=self._meta("gateway", common),
                spec={
                    "parentRefs": [ref],
                    "hostnames": [settings.hostname],
                    "rules": [
                        {"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}], "backendRefs": [backend]}
                    ],
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*self._in_ns.depends_on, *crds]),
            )
        elif settings.exposure == "ingress":
            metadata = self._meta("gateway", common)
            if not settings.await_ingress:
                metadata["annotations"] = {SKIP_AWAIT: "true"}
            k8s.networking.v1.Ingress(
                "gateway-ingress",
                metadata=metadata,
                spec={
                    "ingressClassName": settings.ingress_class_name,
                    "rules": [
                        {
                            "host": settings.hostname,
                            "http": {
                                "paths": [
                                    {
                                        "path": "/v1",
                                        "pathType": "Prefix",
                                        "backend": {"service": {"name": "gateway", "port": {"number": 80}}},
                                    }
                                ]
                            },
                        }
                    ],
                },
                opts=self._in_ns,
            )
