"""The names and labels of every rendered object, checked as the API server checks them.

The stack's own checks (infra/config) refuse values that would render badly; this is the last
line behind them: the JSON schemas the preview validates against do not check names or label
values, so an object built from a value nobody thought of would otherwise reach the cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from infra.config.base import dns_1035_label, dns_label, dns_subdomain, label_value, qualified_name
from infra.preview.capture import Capture

# Kinds whose names Kubernetes holds to a DNS label (1035: Services, which become DNS names).
_LABEL_NAMED = {"Namespace": dns_label, "Service": dns_1035_label}
_LABEL_MAPS = ("labels", "matchLabels", "nodeSelector")


def problems(capture: Capture) -> list[str]:
    found = []
    for resource in capture.kubernetes():
        kind = resource.inputs.get("kind", "?")
        meta = resource.inputs.get("metadata") if isinstance(resource.inputs.get("metadata"), dict) else {}
        name = meta.get("name")
        where = f"{kind} {meta.get('namespace') + '/' if isinstance(meta.get('namespace'), str) else ''}{name}"
        for path, message in _object_problems(kind, resource.inputs):
            found.append(f"{where}: {path}: {message}; the stack produced a value Kubernetes would refuse")
    return found


def _object_problems(kind: str, doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    checks = [("metadata.name", meta.get("name"), _LABEL_NAMED.get(kind, dns_subdomain))]
    if "namespace" in meta:
        checks.append(("metadata.namespace", meta.get("namespace"), dns_label))
    for path, value, check in checks:
        if isinstance(value, str):
            try:
                check(value, "name")
            except ValueError as exc:
                yield path, str(exc)
    yield from _label_maps(meta, "metadata")
    # A PrometheusRule's spec holds alerting rules' labels: Prometheus labels, not Kubernetes ones.
    if kind != "PrometheusRule":
        yield from _label_maps(doc.get("spec"), "spec")


def _label_maps(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}"
            if key in _LABEL_MAPS and isinstance(value, dict):
                for label, text in value.items():
                    try:
                        qualified_name(str(label), "label key")
                        if isinstance(text, str):
                            label_value(text)
                    except ValueError as exc:
                        yield f"{here}.{label}", str(exc)
            else:
                yield from _label_maps(value, here)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _label_maps(item, f"{path}[{index}]")
