"""Tenant NetworkPolicies that open the namespace, and credentials in a container's command line."""

from __future__ import annotations

import pytest

from policies.platform_rules import evaluate
from tests.policies.conftest import gpu_deployment, k8s

# The program's worker egress for downloading weights: the internet, never the cluster's private ranges.
WEIGHTS_EGRESS = {
    "to": [
        {
            "ipBlock": {
                "cidr": "0.0.0.0/0",
                "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"],
            }
        }
    ],
    "ports": [{"protocol": "TCP", "port": 443.0}],
}


def network_policy(namespace: str, **spec):
    return k8s(
        "NetworkPolicy",
        "extra",
        namespace,
        "networking.k8s.io/v1",
        "networking.k8s.io/v1",
        spec={"podSelector": {}, **spec},
    )


def guardrails(resources):
    return [v for v in evaluate(resources) if v.policy == "tenant-guardrails"]


def test_the_weights_egress_is_allowed(healthy):
    policy = network_policy("acme", policyTypes=["Egress"], egress=[WEIGHTS_EGRESS])
    assert guardrails(healthy + [policy]) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"policyTypes": ["Ingress"], "ingress": [{}]}, "allows ingress from anywhere: rule 1 has no `from`"),
        (
            {"policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 8000.0}]}]},
            "allows ingress from anywhere: rule 1 has no `from`",
        ),
        (
            {"policyTypes": ["Ingress"], "ingress": [{"from": [{"namespaceSelector": {}}]}]},
            "rule 1 selects every namespace",
        ),
        ({"policyTypes": ["Egress"], "egress": [{}]}, "allows egress to anywhere: rule 1 has no `to`"),
        (
            {"policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]},
            "rule 1's ipBlock 0.0.0.0/0 reaches the cluster's private range 10.0.0.0/8",
        ),
        (
            {
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}],
            },
            "reaches the cluster's private range 172.16.0.0/12",
        ),
        (
            {"policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}]}]},
            "reaches the cluster's private range 10.96.0.0/12",
        ),
    ],
)
def test_openings_fail_tenant_guardrails(healthy, spec, expected):
    [violation] = guardrails(healthy + [network_policy("globex", **spec)])
    assert violation.resource == "NetworkPolicy globex/extra" and violation.level == "mandatory"
    assert "tenant 'globex'" in violation.message and expected in violation.message


def test_an_allow_all_rule_in_the_default_deny_itself_is_caught(healthy):
    for r in healthy:
        if r.kind == "NetworkPolicy" and r.namespace == "acme":
            r.props["spec"]["ingress"] = [{}]
    messages = [v.message for v in guardrails(healthy)]
    assert any("has no default-deny NetworkPolicy" in m for m in messages)
    assert any("NetworkPolicy acme/default-deny of tenant 'acme' allows ingress from anywhere" in m for m in messages)


def test_openings_outside_tenant_namespaces_are_not_this_rules_business(healthy):
    assert guardrails(healthy + [network_policy("platform-gateway", policyTypes=["Egress"], egress=[{}])]) == []


def test_a_quota_must_bound_cpu_memory_gpus_and_pods(healthy):
    for r in healthy:
        if r.kind == "ResourceQuota" and r.namespace == "globex":
            del r.props["spec"]["hard"]["limits.memory"]
    [violation] = guardrails(healthy)
    assert "namespace 'globex' of tenant 'globex' has no ResourceQuota covering limits.memory" in violation.message


# -- credentials in command and args -------------------------------------------------------------------


def secrets(resources):
    return [v for v in evaluate(resources) if v.policy == "secrets-hygiene"]


@pytest.mark.parametrize(
    ("field", "argv", "expected"),
    [
        ("args", ["--api-key=sk-abcdefghijklmnopqrstuvwx"], "argument 1 holds a token"),
        ("args", ["--api-key", "s3cr3t-value"], "argument 2 is the literal value of '--api-key'"),
        ("args", ["--hf-token=abc123def"], "argument 1 sets 'hf-token' to a literal value"),
        ("args", ["--model", "x", "--token", "hf_abcdefghijklmnopqrstuvwxyz"], "argument 4 holds a token"),
        ("command", ["sh", "-c", "curl -H 'Authorization: Bearer abcdefghijklmnop1234' x"], "argument 3 holds a token"),
        ("command", ["sh", "-c", "AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP run"], "argument 3 holds a token"),
        ("command", ["sh", "-c", "export DB_PASSWORD=hunter22 && serve"], "argument 3 sets 'DB_PASSWORD' to a literal"),
    ],
)
def test_credentials_in_command_and_args(healthy, field, argv, expected):
    worker = gpu_deployment("acme", name="leaky")
    worker.props["spec"]["template"]["spec"]["containers"][0][field] = argv
    [violation] = secrets(healthy + [worker])
    assert violation.resource == "Deployment acme/leaky" and violation.level == "mandatory"
    assert f"container 'engine' {field}: {expected}" in violation.message


@pytest.mark.parametrize(
    "argv",
    [
        ["--model", "Qwen/Qwen2.5-7B-Instruct", "--max-num-batched-tokens", "8192", "--max-total-tokens=4096"],
        ["--api-key", "$(API_KEY)", "--hf-token=$(HF_TOKEN)"],
        ["--token-file", "/var/run/secrets/token", "--hf-token-secret-name=hf-token"],
        ["redis-server", "--requirepass", "$(REDIS_PASSWORD)"],
        ["sh", "-c", 'exec serve --api-key "$API_KEY"'],
    ],
)
def test_references_and_lookalikes_are_not_credentials(healthy, argv):
    worker = gpu_deployment("acme", name="clean")
    worker.props["spec"]["template"]["spec"]["containers"][0]["args"] = argv
    assert secrets(healthy + [worker]) == []
