"""TenantStack: everything one tenant gets, per environment namespace.

Namespace (Pod Security `restricted`), ResourceQuota, LimitRange, RoleBindings of the configured
users and groups to the tenant-admin/-user/-viewer roles, isolating NetworkPolicies, and the tenant's API keys: generated
with pulumi-random, stored as a Secret in the tenant's primary namespace, exported as Pulumi
secrets, and hashed (SHA-256) for the gateway, which never sees a key itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import labels
from components.tenant_network import tenant_network_policies
from components.tenant_rbac import ROLES, subjects
from infra.config import PlatformNamespaces, Quota, Tenant
from infra.quantity import format_bytes, format_cpu
from policies.platform_rules.contract import hash_api_key

API_KEY_SECRET = "tenant-api-keys"
QUOTA_NAME = "tenant-quota"
PRIORITY_QUOTA_NAME = "tenant-priority-classes"
HF_TOKEN_KEY = "HF_TOKEN"
LIMIT_RANGE_NAME = "tenant-limits"
API_KEY_PREFIX = "sk-"
API_KEY_LENGTH = 40

# Defaults for containers that state no resources: the LimitRange's default and defaultRequest.
CONTAINER_DEFAULT = {"cpu": "500m", "memory": "512Mi"}
CONTAINER_DEFAULT_REQUEST = {"cpu": "250m", "memory": "256Mi"}


@dataclass(frozen=True)
class TenantStackArgs:
    tenant: Tenant
    tier_name: str
    quota: Quota
    priority_class_name: str
    platform_namespaces: PlatformNamespaces
    role_names: dict[str, str]  # tenant role -> ClusterRole name, from PlatformCore
    # PriorityClasses this tenant's pods may not use: the system ones, the platform's, other tiers'.
    forbidden_priority_classes: tuple[str, ...] = ()
    # The Hugging Face token (a Pulumi secret) and, per namespace, the Secret names workers read it from.
    hf_token: pulumi.Input[str] | None = None
    hf_token_secrets: dict[str, tuple[str, ...]] | None = None


def quota_hard(quota: Quota) -> dict[str, str]:
    """ResourceQuota `hard` for one namespace; LoadBalancers and NodePorts are never allowed."""
    return {
        "requests.cpu": format_cpu(quota.cpu),
        "limits.cpu": format_cpu(quota.cpu_limit),
        "requests.memory": format_bytes(quota.memory),
        "limits.memory": format_bytes(quota.memory_limit),
        "requests.nvidia.com/gpu": str(quota.gpu),
        "pods": str(quota.pods),
        "persistentvolumeclaims": str(quota.pvcs),
        "requests.storage": format_bytes(quota.storage),
        "services.loadbalancers": "0",
        "services.nodeports": "0",
    }


def limit_range_limits(quota: Quota) -> list[dict]:
    """No single pod or container may exceed the namespace's whole quota.

    The GPU maximum only works if every container states a GPU limit (LimitRange rejects a
    container without a limit for a resource that has a max), so containers default to 0 GPUs.
    """
    pod_max = {
        "cpu": format_cpu(quota.cpu_limit),
        "memory": format_bytes(quota.memory_limit),
        "nvidia.com/gpu": str(quota.gpu),
    }
    return [
        {"type": "Pod", "max": pod_max},
        {
            "type": "Container",
            "max": pod_max,
            "default": {**CONTAINER_DEFAULT, "nvidia.com/gpu": "0"},
            "defaultRequest": {**CONTAINER_DEFAULT_REQUEST, "nvidia.com/gpu": "0"},
        },
    ]


def priority_quota(forbidden: tuple[str, ...]) -> dict:
    """A quota of zero pods for every PriorityClass but the tenant's own tier's.

    Priority admission lets any pod name any PriorityClass; this quota is how Kubernetes scopes them to
    namespaces, so a tenant cannot outrank the platform's services or a higher tier by naming their class.
    """
    return {
        "hard": {"pods": "0"},
        "scopeSelector": {
            "matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": sorted(forbidden)}]
        },
    }


class TenantStack(pulumi.ComponentResource):
    tenant: Tenant
    namespaces: list[str]
    # (namespace, Secret name) -> the Secret holding the Hugging Face token there.
    hf_secrets: dict[tuple[str, str], pulumi.Resource]
    api_keys: pulumi.Output[dict[str, str]]
    api_key_hashes: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: TenantStackArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:tenant:TenantStack", name, None, opts)
        tenant = args.tenant
        self.tenant = tenant
        self._child = pulumi.ResourceOptions(parent=self)

        self.namespaces = []
        self.hf_secrets = {}
        namespace_resources: dict[str, k8s.core.v1.Namespace] = {}
        for environment in tenant.environments:
            namespace = tenant.namespace(environment)
            namespace_resources[namespace] = self._environment(namespace, environment, args)
            self.namespaces.append(namespace)
            for secret_name in (args.hf_token_secrets or {}).get(namespace, ()):
                self.hf_secrets[(namespace, secret_name)] = self._hf_token(
                    namespace_resources[namespace], namespace, secret_name, args.hf_token
                )

        self.api_keys, self.api_key_hashes = self._api_keys(namespace_resources[tenant.primary_namespace])
        self.register_outputs(
            {"namespaces": self.namespaces, "apiKeys": self.api_keys, "apiKeyHashes": self.api_key_hashes}
        )

    # -- one environment --------------------------------------------------------------------

    def _environment(self, namespace: str, environment: str, args: TenantStackArgs) -> k8s.core.v1.Namespace:
        tenant = args.tenant
        tenancy = {
            labels.TENANT: tenant.name,
            labels.TIER: args.tier_name,
            labels.ENVIRONMENT: environment,
            labels.COST_CENTER: tenant.cost_center or tenant.name,
        }
        common = {**labels.recommended("tenant", "tenancy", instance=tenant.name), **tenancy}
        ns = k8s.core.v1.Namespace(
            namespace,
            metadata={
                "name": namespace,
                "labels": {
                    **common,
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "pod-security.kubernetes.io/audit": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
            opts=self._child,
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])

        def meta(name: str) -> dict:
            return {"name": name, "namespace": namespace, "labels": common}

        k8s.core.v1.ResourceQuota(
            f"{namespace}-quota",
            metadata=meta(QUOTA_NAME),
            spec={"hard": quota_hard(args.quota)},
            opts=in_ns,
        )
        if args.forbidden_priority_classes:
            k8s.core.v1.ResourceQuota(
                f"{namespace}-priority",
                metadata=meta(PRIORITY_QUOTA_NAME),
                spec=priority_quota(args.forbidden_priority_classes),
                opts=in_ns,
            )
        k8s.core.v1.LimitRange(
            f"{namespace}-limits",
            metadata=meta(LIMIT_RANGE_NAME),
            spec={"limits": limit_range_limits(args.quota)},
            opts=in_ns,
        )
        for role in ROLES:
            members = subjects(getattr(tenant.users, role), getattr(tenant.groups, role))
            if members:
                # The role is a ClusterRole shared by all tenants; a RoleBinding grants it in this namespace only.
                k8s.rbac.v1.RoleBinding(
                    f"{namespace}-tenant-{role}",
                    metadata=meta(f"tenant-{role}"),
                    role_ref={
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": args.role_names[role],
                    },
                    subjects=members,
                    opts=in_ns,
                )
        for policy_name, spec in tenant_network_policies(
            gateway_namespace=args.platform_namespaces.gateway,
            monitoring_namespace=args.platform_namespaces.monitoring,
        ).items():
            k8s.networking.v1.NetworkPolicy(
                f"{namespace}-{policy_name}", metadata=meta(policy_name), spec=spec, opts=in_ns
            )
        return ns

    # -- secrets workers read ---------------------------------------------------------------

    def _hf_token(
        self, namespace: k8s.core.v1.Namespace, namespace_name: str, name: str, token: pulumi.Input[str]
    ) -> pulumi.Resource:
        """The Hugging Face token for gated models, created with the namespace so workers never wait for it."""
        return k8s.core.v1.Secret(
            f"{namespace_name}-{name}",
            metadata={
                "name": name,
                "namespace": namespace_name,
                "labels": {
                    **labels.recommended("tenant", "model-access", instance=self.tenant.name),
                    labels.TENANT: self.tenant.name,
                },
            },
            type="Opaque",
            string_data={HF_TOKEN_KEY: pulumi.Output.secret(token)},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
        )

    # -- API keys ---------------------------------------------------------------------------

    def _api_keys(self, namespace: k8s.core.v1.Namespace) -> tuple[pulumi.Output, pulumi.Output]:
        tenant = self.tenant
        keys: dict[str, pulumi.Output[str]] = {}
        for key_id in tenant.api_keys:
            password = random.RandomPassword(
                f"{tenant.name}-api-key-{key_id}", length=API_KEY_LENGTH, special=False, opts=self._child
            )
            keys[key_id] = pulumi.Output.secret(password.result.apply(lambda value: f"{API_KEY_PREFIX}{value}"))

        k8s.core.v1.Secret(
            f"{tenant.name}-api-keys",
            metadata={
                "name": API_KEY_SECRET,
                "namespace": namespace.metadata.name,
                "labels": {
                    **labels.recommended("tenant", "api-keys", instance=tenant.name),
                    labels.TENANT: tenant.name,
                },
            },
            type="Opaque",
            string_data=keys,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
        )
        all_keys = pulumi.Output.all(**keys)
        # Hashes are not secret: they are what the gateway's Secret and the plan may show.
        hashes = pulumi.Output.unsecret(all_keys.apply(lambda values: {k: hash_api_key(v) for k, v in values.items()}))
        return pulumi.Output.secret(all_keys), hashes
