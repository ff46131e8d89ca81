"""Helm values checked against the chart's own defaults.

Helm silently ignores a values key the chart does not know, so a typo (`toleration:` for
`tolerations:`) deploys without effect. Every chart this project installs has its upstream
values.yaml vendored under components/vendor/charts/; every key we set must exist there.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

VENDOR = Path(__file__).resolve().parent / "vendor" / "charts"


@lru_cache(maxsize=16)
def vendored_values(chart: str) -> dict[str, Any]:
    path = VENDOR / chart / "values.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no vendored values for chart {chart!r} (expected {path})")
    return yaml.safe_load(path.read_text()) or {}


def unknown_keys(values: dict[str, Any], defaults: dict[str, Any], prefix: str = "") -> list[str]:
    """Key paths in `values` that the chart's defaults do not have.

    A default that is an empty map, a list, a scalar or null is free-form (nodeSelector,
    podAnnotations, config.map…): whatever is set below it is the chart's business.
    """
    problems = []
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in defaults:
            problems.append(path)
            continue
        default = defaults[key]
        if isinstance(value, dict) and isinstance(default, dict) and default:
            problems.extend(unknown_keys(value, default, path))
    return problems


def chart_name(chart: str) -> str:
    """`oci://ghcr.io/run-ai/fake-gpu-operator/fake-gpu-operator` -> `fake-gpu-operator`."""
    return chart.rstrip("/").rsplit("/", 1)[-1]
