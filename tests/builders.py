"""Stack configurations for tests: the shipped stacks' raw `config:` mappings and a minimal one.

Plain functions, not fixtures, so any test module imports them by name.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
STACKS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))


def stack_config(stack: str) -> dict[str, Any]:
    """A shipped stack's raw `config:` mapping (a deep copy tests may modify)."""
    return copy.deepcopy(yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"])


def minimal_config(**tenant_overrides: Any) -> dict[str, Any]:
    tenant = {"name": "team-a", "tier": "silver", **tenant_overrides}
    return {
        "gpu-platform:platform": {
            "flavour": "kind",
            "capacity": {"cpu": "64", "memory": "256Gi", "nvidia.com/gpu": 8},
            "nodes": ["cpu-node-1"],
        },
        "gpu-platform:gpuPool": {"nodes": ["gpu-node-1"], "fake": {"gpusPerNode": 8}},
        "gpu-platform:tenants": [tenant, {"name": "team-b", "tier": "bronze"}],
    }
