"""GatewayStack: the tenant-aware OpenAI-compatible gateway and its Redis.

Namespace; Redis (a StatefulSet with a volume, memory-bounded, reachable only from the
gateway); the gateway Deployment (>= 2 replicas, probes, PDB, CPU HPA) mounting a Secret with
the tenants' key hashes, limits and routes; a Service, a ServiceMonitor; NetworkPolicies; and
exposure through a Gateway API HTTPRoute (default) or an Ingress of any class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import labels
from components.tenant_network import DNS_PORTS
from infra.config import GatewaySettings, Images, PlatformNamespaces
from infra.quantity import format_bytes

PORT = 8080
REDIS_PORT = 6379
CONFIG_FILE = "gateway.json"
CONFIG_DIR = "/etc/gateway"
PRE_STOP_SECONDS = 5
API_SERVER_PORTS = (443, 6443)


@dataclass(frozen=True)
class GatewayStackArgs:
    settings: GatewaySettings
    images: Images
    namespaces: PlatformNamespaces
    # The gateway document (components.gateway_config), an Output because key hashes are outputs.
    document: pulumi.Input[dict[str, Any]]


def _security(read_only: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def network_policies(
    namespace: str, monitoring: str, gateway: dict[str, str], redis: dict[str, str]
) -> dict[str, dict[str, Any]]:
    ns = lambda name: {"namespaceSelector": labels.namespace_selector(name)}  # noqa: E731
    return {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        # Clients arrive through whichever Gateway or Ingress controller the cluster runs.
        "allow-clients-to-gateway": {
            "podSelector": {"matchLabels": gateway},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": PORT}]}],
        },
        "allow-gateway-to-redis": {
            "podSelector": {"matchLabels": redis},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": gateway}}],
                    "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
                }
            ],
        },
        "allow-monitoring": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [ns(monitoring)]}]},
        "allow-gateway-egress": {
            "podSelector": {"matchLabels": gateway},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"namespaceSelector": {"matchExpressions": [{"key": labels.TENANT, "operator": "Exists"}]}}],
                    "ports": [{"protocol": "TCP", "port": 8000}],
                },
                {"to": [{"podSelector": {"matchLabels": redis}}], "ports": [{"protocol": "TCP", "port": REDIS_PORT}]},
                {
                    "to": [{**ns("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                    "ports": DNS_PORTS,
                },
                # The Kubernetes API, for the EndpointSlice watch (the endpoint picker's pods). Policies
                # see the API server's own address after the Service's DNAT, which differs per cluster,
                # so only the ports are fixed here.
                {"ports": [{"protocol": "TCP", "port": port} for port in API_SERVER_PORTS]},
            ],
        },
    }


# The endpoint picker's discovery: read EndpointSlices, nothing else.
ENDPOINTSLICE_RULES = [
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
]
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def service_account_volume() -> dict[str, Any]:
    """What automounting would give, mounted explicitly into the gateway container only."""
    return {
        "name": "kube-api-access",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ]
        },
    }


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
        self._in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        gateway_labels = labels.recommended("gateway", "gateway", instance="gateway")
        redis_labels = labels.recommended("redis", "rate-limit-store", instance="gateway-redis")
        gateway_selector = {k: gateway_labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
        redis_selector = {k: redis_labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}

        redis_url = self._redis(settings, args.images, redis_labels, redis_selector)
        config = k8s.core.v1.Secret(
            "gateway-config",
            metadata=self._meta("gateway-config", gateway_labels),
            string_data=pulumi.Output.from_input(args.document).apply(
                lambda doc: {CONFIG_FILE: json.dumps(doc, indent=1, sort_keys=True)}
            ),
            opts=self._in_ns,
        )
        self._gateway(settings, args.images, gateway_labels, gateway_selector, redis_url, config)
        for policy, spec in network_policies(
            namespace, args.namespaces.monitoring, gateway_selector, redis_selector
        ).items():
            k8s.networking.v1.NetworkPolicy(
                f"gateway-{policy}", metadata=self._meta(policy, gateway_labels), spec=spec, opts=self._in_ns
            )
        self._expose(settings, gateway_labels)
        self.service_url = f"http://gateway.{namespace}.svc.cluster.local"
        self.register_outputs({"serviceUrl": self.service_url, "namespace": namespace})

    def _meta(self, name: str, common: dict[str, str]) -> dict[str, Any]:
        return {"name": name, "namespace": self.namespace, "labels": common}

    def _redis(
        self, settings: GatewaySettings, images: Images, common: dict[str, str], selector: dict[str, str]
    ) -> str:
        redis = settings.redis
        max_memory = format_bytes(redis.max_memory).replace("Mi", "mb").replace("Gi", "gb")
        probe = {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 10}
        k8s.apps.v1.StatefulSet(
            "gateway-redis",
            metadata=self._meta("redis", common),
            spec={
                "serviceName": "redis",
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": common},
                    "spec": {
                        "automountServiceAccountToken": False,
                        # Any high uid works: redis only needs /data, which fsGroup makes writable.
                        "securityContext": _pod_security(10001),
                        "containers": [
                            {
                                "name": "redis",
                                "image": images.redis,
                                # Limits must never be evicted to make room: refuse writes instead (the gateway then
                                # falls back to its local limiter and says so in its metrics).
                                "args": [
                                    "redis-server",
                                    "--appendonly",
                                    "yes",
                                    "--maxmemory",
                                    max_memory,
                                    "--maxmemory-policy",
                                    "noeviction",
                                ],
                                "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
                                "resources": redis.resources.as_kubernetes(),
                                "readinessProbe": probe,
                                "livenessProbe": {**probe, "initialDelaySeconds": 10},
                                "securityContext": _security(),
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": format_bytes(redis.storage)}},
                            **({"storageClassName": redis.storage_class} if redis.storage_class else {}),
                        },
                    }
                ],
            },
            opts=self._in_ns,
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
        return f"redis://redis.{self.namespace}.svc.cluster.local:{REDIS_PORT}/0"

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

    def _gateway(self, settings, images, common, selector, redis_url: str, config: k8s.core.v1.Secret) -> None:
        self._discovery_access(common)
        env = {
            "GATEWAY_CONFIG_FILE": f"{CONFIG_DIR}/{CONFIG_FILE}",
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_FAIL_CLOSED": str(settings.fail_closed).lower(),
            "GATEWAY_MAX_BODY_BYTES": str(settings.max_body_bytes),
            "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": str(settings.upstream_timeout_seconds),
            "GATEWAY_HOST": "0.0.0.0",
            "GATEWAY_PORT": str(PORT),
        }
        deployment = k8s.apps.v1.Deployment(
            "gateway",
            metadata=self._meta("gateway", common),
            spec={
                "replicas": settings.replicas,
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": common},
                    "spec": {
                        "serviceAccountName": "gateway",
                        # The token is mounted explicitly below (the EndpointSlice watch needs it).
                        "automountServiceAccountToken": False,
                        "securityContext": _pod_security(10001),
                        # Service links would inject GATEWAY_PORT=tcp://… and collide with the settings prefix.
                        "enableServiceLinks": False,
                        # Streams may run as long as the upstream timeout; SIGTERM drains them first.
                        "terminationGracePeriodSeconds": int(settings.upstream_timeout_seconds) + PRE_STOP_SECONDS + 5,
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
                                "ports": [{"name": "http", "containerPort": PORT}],
                                "env": [{"name": key, "value": value} for key, value in env.items()],
                                "resources": settings.resources.as_kubernetes(),
                                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
                                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
                                "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
                                "securityContext": _security(),
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
            opts=pulumi.ResourceOptions(parent=self, depends_on=[config], ignore_changes=["spec.replicas"]),
        )
        after = pulumi.ResourceOptions(parent=self, depends_on=[deployment])
        k8s.core.v1.Service(
            "gateway",
            metadata=self._meta("gateway", common),
            spec={
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
            opts=self._in_ns,
        )
        k8s.policy.v1.PodDisruptionBudget(
            "gateway",
            metadata=self._meta("gateway", common),
            spec={"minAvailable": 1, "selector": {"matchLabels": selector}},
            opts=after,
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            "gateway",
            metadata=self._meta("gateway", common),
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"},
                "minReplicas": settings.replicas,
                "maxReplicas": settings.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": settings.target_cpu_utilization},
                        },
                    }
                ],
            },
            opts=after,
        )
        k8s.apiextensions.CustomResource(
            "gateway-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=self._meta("gateway", common),
            spec={
                "selector": {"matchLabels": selector},
                "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
            },
            opts=self._in_ns,
        )

    def _expose(self, settings: GatewaySettings, common: dict[str, str]) -> None:
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
                opts=self._in_ns,
            )
        elif settings.exposure == "ingress":
            k8s.networking.v1.Ingress(
                "gateway-ingress",
                metadata=self._meta("gateway", common),
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
