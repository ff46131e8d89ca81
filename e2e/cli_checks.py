"""What the platform's own CLI reports about a deployed stack, checked against the real apiserver.

The commands run as a user runs them, in their own process, with the control plane's kubeconfig.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from components.tenant import QUOTA_NAME
from e2e.checks import Deployed
from infra.quantity import parse_quantity

ROOT = Path(__file__).resolve().parents[1]


def platformctl(*args: str) -> tuple[int, str]:
    """The CLI as a user runs it, in its own process: (exit status, stdout and stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stdout + done.stderr


def _quantity(value: str) -> float:
    return float(parse_quantity(value))


def usage_against_quotas(deployed: Deployed) -> list[str]:
    """`platformctl usage --kubeconfig --json` reports every tenant namespace's quota as the apiserver has it."""
    status, output = platformctl("usage", "--stack", deployed.stack, "--kubeconfig", str(deployed.kubeconfig), "--json")
    if status != 0:
        return [f"platformctl usage exited {status}: {output.strip()[-2000:]}"]
    report = json.loads(output)
    reported = {ns["namespace"]: ns["quota"] for t in report["tenants"] for ns in t["namespaces"]}
    problems = []
    for tenant in deployed.config.tenants:
        for namespace in tenant.namespaces:
            if namespace not in reported:
                problems.append(f"tenant {tenant.name}: namespace {namespace} missing from the usage report")
                continue
            quota = deployed.kube.get("v1", "ResourceQuota", QUOTA_NAME, namespace)
            if not quota.get("status", {}).get("hard"):
                problems.append(f"namespace {namespace}: ResourceQuota {QUOTA_NAME} has no status yet")
                continue
            compared = 0
            for key, quantity in quota["status"].get("used", {}).items():
                shown = reported[namespace].get(key)
                if shown is None:
                    continue  # a key the report does not show (storage, PVC counts)
                compared += 1
                if abs((shown["used"] or 0) - _quantity(quantity)) > 1e-6 * max(1.0, _quantity(quantity)):
                    problems.append(
                        f"namespace {namespace}: {key} used {quantity} in the quota, {shown['used']} reported"
                    )
                hard = quota["status"]["hard"][key]
                if abs((shown["hard"] or 0) - _quantity(hard)) > 1e-6 * max(1.0, _quantity(hard)):
                    problems.append(f"namespace {namespace}: {key} hard {hard} in the quota, {shown['hard']} reported")
            if compared < 4:
                problems.append(f"namespace {namespace}: only {compared} of the quota's keys are in the usage report")
    return problems
