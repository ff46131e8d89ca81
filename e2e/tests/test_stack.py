"""After `pulumi up` of each shipped stack, what a user would check, asked of a real apiserver.

Tests run in this order on one cluster per stack; the scaling test comes after the readiness
tests because it changes replica counts.
"""

from __future__ import annotations

import os

from e2e import checks, cli_checks

READY_TIMEOUT = float(os.environ.get("E2E_READY_TIMEOUT", "60"))


def _fail_with(stack: str, what: str, problems: list[str]) -> None:
    assert not problems, f"stack {stack}: {what}:\n  " + "\n  ".join(problems)


def test_preflight_before_the_first_up_finds_the_cluster_ready(deployed):
    status, output = deployed.preflight
    assert status == 0 and "cluster ready for pulumi up" in output, f"stack {deployed.stack}: {output}"


def test_every_object_admitted(deployed):
    assert not deployed.result.failed() and not deployed.result.skipped(), deployed.result.report()


def test_custom_resources_depend_on_their_crd_installer(deployed):
    _fail_with(deployed.stack, "custom resources", checks.custom_resources_without_installer(deployed.capture))


def test_workloads_available(deployed):
    _fail_with(deployed.stack, "workloads not Available", checks.wait_available(deployed, READY_TIMEOUT))


def test_no_pod_pending(deployed):
    _fail_with(deployed.stack, "pods not running", checks.pods_not_running(deployed))


def test_pod_references_resolve(deployed):
    _fail_with(deployed.stack, "pods the kubelet could not start", checks.pod_references_missing(deployed))


def test_rbac_through_subject_access_reviews(deployed):
    _fail_with(deployed.stack, "RBAC", checks.rbac(deployed))


def test_pod_security_refuses_privileged_pods(deployed):
    _fail_with(deployed.stack, "Pod Security", checks.pod_security(deployed))


def test_usage_reports_the_quotas_the_apiserver_holds(deployed):
    _fail_with(deployed.stack, "platformctl usage --kubeconfig", cli_checks.usage_against_quotas(deployed))


def test_quota_holds_at_hpa_max_replicas(deployed):
    _fail_with(deployed.stack, "at HPA maxReplicas", checks.scale_to_max(deployed, READY_TIMEOUT))
