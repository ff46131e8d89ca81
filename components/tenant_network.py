"""NetworkPolicies that isolate a tenant namespace.

Deny everything, then open the few paths the platform needs: traffic inside the namespace,
requests from the gateway, scrapes from monitoring, and DNS. Another tenant's namespace
matches none of these selectors, so it can neither call nor be called.
"""

from __future__ import annotations

from components.labels import namespace_selector

DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def tenant_network_policies(*, gateway_namespace: str, monitoring_namespace: str) -> dict[str, dict]:
    """NetworkPolicy specs by name, for one tenant namespace.

    One deny-all policy, and one policy holding every allowed path: fewer objects per namespace
    keeps large stacks fast to preview and apply, and the allowed paths read as one list.
    """
    return {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "allow-platform-paths": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [{"podSelector": {}}]},
                {"from": [{"namespaceSelector": namespace_selector(gateway_namespace)}]},
                {"from": [{"namespaceSelector": namespace_selector(monitoring_namespace)}]},
            ],
            "egress": [
                {"to": [{"podSelector": {}}]},
                {
                    "to": [
                        {
                            "namespaceSelector": namespace_selector("kube-system"),
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": DNS_PORTS,
                },
            ],
        },
    }
