"""Quantities and numbers: finite, non-negative, within what Kubernetes stores; a kubernetesVersion with a schema."""

from __future__ import annotations

import pytest

from infra.config.base import schema_versions
from tests.unit.stack_file_cases import KIND_TEXT, StackFiles, accepted, refused


@pytest.fixture
def files(tmp_path) -> StackFiles:
    return StackFiles(tmp_path)


def capacity_cpu(text: str) -> str:
    return KIND_TEXT.replace('      cpu: "16"\n', f"      cpu: {text}\n")


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (".nan", "quantity"),  # refused by the quantity parser or by the finite check
        (".inf", "quantity"),  # refused by the quantity parser or by the finite check
        ("-.inf", "quantity"),  # refused by the quantity parser or by the finite check
        ("1e400", "quantity"),  # refused by the quantity parser or by the finite check  # a float too large is infinity
        ('"1e400"', "larger than Kubernetes can store"),
        ('"NaN"', "is not a Kubernetes quantity"),
        ("-1", "must be >= 0"),
        ('"-500m"', "must be >= 0"),
        ("yes", "is not a Kubernetes quantity"),
    ],
)
def test_capacity_quantity(files, bad, expected):
    accepted(files.text(capacity_cpu('"16.5"')))
    refused(files.text(capacity_cpu(bad)), "platform.capacity.cpu: ", expected)


@pytest.mark.parametrize("bad", [".inf", ".nan", "-1"])
def test_tenant_quota_quantity(files, bad):
    text = KIND_TEXT.replace("    - name: initech\n", f"    - name: initech\n      quota: {{memory: {bad}}}\n")
    refused(files.text(text), "tenants[2].quota.memory: ")


@pytest.mark.parametrize(
    ("setting", "good", "bad", "expected"),
    [
        ("overSubscriptionRatio", "1.5", ".inf", "platform.overSubscriptionRatio: Input should be a finite number"),
        ("overSubscriptionRatio", "1.5", ".nan", "platform.overSubscriptionRatio: "),
        ("maxTenantShare", "0.25", ".nan", "platform.maxTenantShare: "),
    ],
)
def test_platform_floats_are_finite(files, setting, good, bad, expected):
    def text(value):
        lines = KIND_TEXT.replace("    overSubscriptionRatio: 1.0\n", "").replace("    maxTenantShare: 0.30\n", "")
        return lines.replace(
            '    kubernetesVersion: "1.33"\n', f'    kubernetesVersion: "1.33"\n    {setting}: {value}\n'
        )

    accepted(files.text(text(good)))
    refused(files.text(text(bad)), expected)


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ("gpu-platform:monitoring.pricing.gpuHour", ".inf"),
        ("gpu-platform:monitoring.pricing.tierMultipliers.gold", "-1"),
        ("gpu-platform:monitoring.thresholds.queueDepth", ".inf"),
        ("gpu-platform:gateway.upstreamTimeoutSeconds", ".nan"),
    ],
)
def test_other_floats_are_finite(files, path, bad):
    key, *fields = path.split(".")
    nested = bad
    for field in reversed(fields):
        nested = f"{{{field}: {nested}}}"
    text = KIND_TEXT.replace("  gpu-platform:tiers:\n", f"  {key}: {nested}\n  gpu-platform:tiers:\n")
    refused(files.text(text), ".".join([key.removeprefix("gpu-platform:"), *fields]) + ": ")


@pytest.mark.parametrize(
    ("autoscaling", "key"),
    [
        ("{maxReplicas: 3000000000}", "autoscaling.maxReplicas: must be <= 2147483647"),
        ("{maxReplicas: 1e10}", "autoscaling.maxReplicas: "),
        ("{targetQueueDepth: .inf}", "autoscaling.targetQueueDepth: "),
    ],
)
def test_worker_numbers_fit_kubernetes(files, autoscaling, key):
    text = KIND_TEXT.replace(
        "autoscaling: {minReplicas: 1, maxReplicas: 2, targetQueueDepth: 4}", f"autoscaling: {autoscaling}"
    )
    refused(files.text(text), f"tenants[0].workers[0].{key}")


def test_counts_fit_int64(files):
    text = KIND_TEXT.replace("pods: 10, storage: 20Gi}", f"pods: {2**64}, storage: 20Gi}}")
    refused(files.text(text), "tiers.gold.quota.pods: ")


def test_kubernetes_version_needs_a_schema(files):
    versions = schema_versions()
    assert "1.33" in versions
    for version in (versions[0], versions[-1]):
        accepted(files.text(KIND_TEXT.replace('kubernetesVersion: "1.33"', f'kubernetesVersion: "{version}"')))
    for bad in ("1.99", "1.20", "2.0", "1.33.1", "1.33\\n"):
        path = files.text(KIND_TEXT.replace('kubernetesVersion: "1.33"', f'kubernetesVersion: "{bad}"'))
        refused(path, "platform.kubernetesVersion: ", f"use one of {', '.join(versions)}")


def test_numbers_rendered_into_kubernetes_fields(files):
    tiny = KIND_TEXT.replace("targetQueueDepth: 4}", "targetQueueDepth: 0.0001}")
    refused(files.text(tiny), "tenants[0].workers[0].autoscaling.targetQueueDepth: must be >= 0.001")
    huge = KIND_TEXT.replace(
        "  gpu-platform:tiers:\n", "  gpu-platform:gateway: {upstreamTimeoutSeconds: 1e300}\n  gpu-platform:tiers:\n"
    )
    refused(files.text(huge), "gateway.upstreamTimeoutSeconds: must be <= 86400")
