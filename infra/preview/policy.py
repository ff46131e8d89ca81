"""The policy pack's rules run on captured resources: the offline twin of `--policy-pack policies`."""

from __future__ import annotations

from typing import Any

from infra.preview.capture import Capture
from infra.preview.manifests import plain
from policies.platform_rules import Resource, evaluate


def resources(capture: Capture) -> list[Resource]:
    return [Resource(type=r.type, name=r.name, urn=r.urn, props=plain(r.inputs)) for r in capture.resources if r.custom]


def check(capture: Capture, config: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """Violations as report.json lists them; the stack's capacity ConfigMap supplies the pack's settings."""
    return [violation.as_dict() for violation in evaluate(resources(capture), config)]
