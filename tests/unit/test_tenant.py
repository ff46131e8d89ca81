"""TenantStack under Pulumi mocks: namespaces, quota, limits, RBAC, network policy, API keys."""

from __future__ import annotations

import hashlib

import pytest

from components.tenant import API_KEY_SECRET
from infra.preview.capture import SECRET_SIG
from infra.preview.manifests import REDACTED, manifest
from tests.builders import minimal_config


@pytest.fixture
def capture(run_program):
    config = minimal_config(
        environments=["dev", "prod"],
        quota={"gpu": 3, "cpu": "3", "cpuLimit": "6"},
        users={"admin": ["ann"], "viewer": ["vic"]},
        groups={"user": ["devs"]},
        apiKeys=["primary", "secondary"],
        costCenter="cc-42",
    )
    return run_program(config)


def spec_of(capture, kind, name, namespace=None):
    return capture.find(kind, name, namespace).inputs


def test_one_namespace_per_environment_with_tenancy_and_psa_labels(capture):
    for namespace, environment in (("team-a-dev", "dev"), ("team-a", "prod")):
        labels = spec_of(capture, "Namespace", namespace)["metadata"]["labels"]
        assert labels["platform.io/tenant"] == "team-a"
        assert labels["platform.io/tier"] == "silver"
        assert labels["platform.io/environment"] == environment
        assert labels["cost-center"] == "cc-42"
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_quota_merges_tenant_overrides_over_tier(capture):
    hard = spec_of(capture, "ResourceQuota", "tenant-quota", "team-a")["spec"]["hard"]
    assert hard["requests.nvidia.com/gpu"] == "3"
    assert hard["requests.cpu"] == "3" and hard["limits.cpu"] == "6"
    assert hard["requests.memory"] == "8Gi"  # silver preset, not overridden
    assert hard["services.loadbalancers"] == "0" and hard["services.nodeports"] == "0"
    for key in ("pods", "persistentvolumeclaims", "requests.storage", "limits.memory"):
        assert key in hard


def test_limit_range_caps_pods_at_quota_including_gpu(capture):
    limits = spec_of(capture, "LimitRange", "tenant-limits", "team-a-dev")["spec"]["limits"]
    pod = next(item for item in limits if item["type"] == "Pod")
    container = next(item for item in limits if item["type"] == "Container")
    assert pod["max"]["nvidia.com/gpu"] == "3" and pod["max"]["cpu"] == "6"
    # Containers that state no GPU get 0, so the GPU max does not reject CPU-only pods.
    assert container["default"]["nvidia.com/gpu"] == "0"
    assert container["defaultRequest"]["cpu"] == "250m"


def _allows(rules, verb, resource, group="", name=None):
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            names = rule.get("resourceNames")
            if not names or name in names:
                return True
    return False


def _rules(capture, role):
    return spec_of(capture, "ClusterRole", f"platform-tenant-{role}")["rules"]


def test_viewer_is_read_only_and_cannot_read_secrets(capture):
    rules = _rules(capture, "viewer")
    assert _allows(rules, "list", "pods") and _allows(rules, "get", "deployments", "apps")
    for rule in rules:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
    assert not _allows(rules, "get", "secrets", name=API_KEY_SECRET)
    assert not _allows(rules, "list", "secrets")


def test_user_reads_only_its_own_api_key_secret(capture):
    rules = _rules(capture, "user")
    assert _allows(rules, "create", "deployments", "apps")
    assert _allows(rules, "get", "secrets", name=API_KEY_SECRET)
    assert not _allows(rules, "get", "secrets", name="someone-elses")
    assert not _allows(rules, "list", "secrets")
    assert not _allows(rules, "create", "pods/exec")


@pytest.mark.parametrize("role", ["admin", "user", "viewer"])
def test_no_role_can_loosen_its_own_guardrails(capture, role):
    rules = _rules(capture, role)
    for verb in ("create", "update", "patch", "delete"):
        assert not _allows(rules, verb, "resourcequotas")
        assert not _allows(rules, verb, "limitranges")
        assert not _allows(rules, verb, "networkpolicies", "networking.k8s.io")
        assert not _allows(rules, verb, "rolebindings", "rbac.authorization.k8s.io")
        assert not _allows(rules, verb, "namespaces")
        assert not _allows(rules, verb, "roles", "rbac.authorization.k8s.io")


def test_roles_grant_nothing_cluster_wide(capture):
    # Shared tenant ClusterRoles are only ever bound with namespaced RoleBindings. The one cluster-wide
    # binding is the gateway's own ServiceAccount reading EndpointSlices, and nothing else.
    cluster_bindings = [r.inputs for r in capture.objects("ClusterRoleBinding")]
    roles = {r.inputs["metadata"]["name"]: r.inputs for r in capture.objects("ClusterRole")}
    for binding in cluster_bindings:
        assert not binding["roleRef"]["name"].startswith("platform-tenant-")
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gateway", "namespace": "platform-gateway"}]
        rules = roles[binding["roleRef"]["name"]]["rules"]
        assert rules == [
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
        ]
    bindings = capture.objects("RoleBinding")
    assert bindings and all(b.inputs["metadata"]["namespace"] in ("team-a", "team-a-dev") for b in bindings)


def test_bindings_only_for_configured_members(capture):
    binding = spec_of(capture, "RoleBinding", "tenant-admin", "team-a")
    assert binding["subjects"] == [{"kind": "User", "name": "ann", "apiGroup": "rbac.authorization.k8s.io"}]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "platform-tenant-admin",
    }
    group_binding = spec_of(capture, "RoleBinding", "tenant-user", "team-a")
    assert group_binding["subjects"][0]["kind"] == "Group"
    # team-b configured no members: no bindings at all.
    assert not [r for r in capture.objects("RoleBinding") if r.tenant == "team-b"]


def _policies(capture, namespace):
    return [r.inputs["spec"] for r in capture.objects("NetworkPolicy", namespace)]


def _selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()) and not selector.get(
        "matchExpressions"
    )


def ingress_allowed(policies, *, source_namespace, source_namespace_labels, target_namespace):
    """NetworkPolicy semantics for namespace-level selectors: any policy selecting the pod may allow."""
    isolating = [p for p in policies if "Ingress" in p["policyTypes"]]
    if not isolating:
        return True
    for policy in isolating:
        for rule in policy.get("ingress", []):
            if not rule.get("from"):
                return True  # a rule without peers admits every source
            for peer in rule["from"]:
                ns_selector, pod_selector = peer.get("namespaceSelector"), peer.get("podSelector")
                if ns_selector is None and pod_selector is not None and source_namespace == target_namespace:
                    return True
                if ns_selector is not None and _selects(ns_selector, source_namespace_labels):
                    return True
    return False


def _ns_labels(name, **extra):
    return {"kubernetes.io/metadata.name": name, **extra}


def test_network_policy_default_deny_and_allowed_paths(capture):
    policies = _policies(capture, "team-a")
    assert {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]} in policies
    check = lambda ns, **labels: ingress_allowed(  # noqa: E731
        policies, source_namespace=ns, source_namespace_labels=_ns_labels(ns, **labels), target_namespace="team-a"
    )
    assert check("platform-gateway")
    assert check("monitoring")
    assert check("team-a")
    assert not check("team-b", **{"platform.io/tenant": "team-b"})
    # Not even the tenant's own dev environment may call prod directly.
    assert not check("team-a-dev", **{"platform.io/tenant": "team-a"})
    assert not check("default")


def test_dns_is_the_only_egress_outside_the_namespace(capture):
    egress_rules = [rule for p in _policies(capture, "team-a") for rule in p.get("egress", [])]
    # A rule without peers, or with an ipBlock, reaches outside the namespace as much as a namespaceSelector does.
    outside = [
        rule
        for rule in egress_rules
        if not rule.get("to") or any("namespaceSelector" in peer or "ipBlock" in peer for peer in rule["to"])
    ]
    assert len(outside) == 1
    assert {port["port"] for port in outside[0]["ports"]} == {53}


def test_api_keys_are_secret_and_hashed_for_the_gateway(capture):
    secret = spec_of(capture, "Secret", API_KEY_SECRET, "team-a")
    assert SECRET_SIG in secret["stringData"], "key values must be Pulumi secrets"
    keys = secret["stringData"]["value"]
    assert set(keys) == {"primary", "secondary"} and keys["primary"] != keys["secondary"]
    assert all(key.startswith("sk-") and len(key) > 40 for key in keys.values())
    hashes = capture.outputs["tenants"]["team-a"]["apiKeyHashes"]
    assert hashes == {key_id: hashlib.sha256(key.encode()).hexdigest() for key_id, key in keys.items()}
    assert "apiKeys" in capture.secret_outputs and "apiKeys" not in capture.outputs
    # The rendered manifest keeps the key ids but never a value.
    assert manifest(capture.find("Secret", API_KEY_SECRET, "team-a"))["stringData"] == {
        "primary": REDACTED,
        "secondary": REDACTED,
    }


def test_secret_lives_only_in_the_primary_namespace(capture):
    namespaces = {r.inputs["metadata"]["namespace"] for r in capture.objects("Secret") if r.tenant == "team-a"}
    assert namespaces == {"team-a"}


def test_priority_classes_created_once_per_tier(run_program):
    config = minimal_config()
    config["gpu-platform:tenants"].append({"name": "team-c", "tier": "silver"})
    capture = run_program(config)
    names = [r.inputs["metadata"]["name"] for r in capture.objects("PriorityClass")]
    assert sorted(names) == ["platform-bronze", "platform-critical", "platform-silver"]


def test_capacity_configmap_states_the_denominator(capture):
    data = spec_of(capture, "ConfigMap", "platform-capacity", "platform-system")["data"]
    assert data == {
        "cpu": "64",
        "memory": "256Gi",
        "gpu": "8",
        "maxTenantShare": "0.3",
        "overSubscriptionRatio": "1.0",
        "gpuPoolLabel": "platform.io/pool=gpu",
        "gpuTaint": "nvidia.com/gpu=true:NoSchedule",
    }


def test_resources_are_parented_to_their_component(capture):
    quota = capture.find("ResourceQuota", "tenant-quota", "team-a-dev")
    assert quota.component == "platform:tenant:TenantStack team-a"
    assert quota.tenant == "team-a"
