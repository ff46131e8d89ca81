"""Who may reach the gateway and Redis, what the gateway may reach, and its access to EndpointSlices."""

from __future__ import annotations

from typing import Any

from components import labels
from components.tenant_network import DNS_PORTS
from infra.config.engines import worker_ports

PORT = 8080
REDIS_PORT = 6379
# /metrics is served on its own port, reachable only from the monitoring namespace.
METRICS_PORT = 9090
API_SERVER_PORTS = (443, 6443)


def gateway_network_policies(
    namespace: str,
    monitoring: str,
    gateway: dict[str, str],
    redis: dict[str, str],
    api_server_cidrs: list[str] | tuple[str, ...] = (),
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
        # Prometheus scrapes the gateway; Redis accepts nobody but the gateway.
        "allow-monitoring": {
            "podSelector": {"matchLabels": gateway},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [ns(monitoring)], "ports": [{"protocol": "TCP", "port": METRICS_PORT}]}],
        },
        "allow-gateway-egress": {
            "podSelector": {"matchLabels": gateway},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"namespaceSelector": {"matchExpressions": [{"key": labels.TENANT, "operator": "Exists"}]}}],
                    "ports": [{"protocol": "TCP", "port": p} for p in worker_ports()],
                },
                {"to": [{"podSelector": {"matchLabels": redis}}], "ports": [{"protocol": "TCP", "port": REDIS_PORT}]},
                {
                    "to": [{**ns("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                    "ports": DNS_PORTS,
                },
                # The Kubernetes API, for the EndpointSlice watch (the endpoint picker's pods). Policies
                # see the API server's own address after the Service's DNAT, which differs per cluster:
                # the stack's `apiServerCidrs` where it names them, else only the ports are fixed.
                {
                    **({"to": [{"ipBlock": {"cidr": cidr}} for cidr in api_server_cidrs]} if api_server_cidrs else {}),
                    "ports": [{"protocol": "TCP", "port": port} for port in API_SERVER_PORTS],
                },
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
