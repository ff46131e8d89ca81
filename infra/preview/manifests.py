"""Captured resource inputs rendered as Kubernetes manifests, with secret values redacted."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from infra.preview.capture import HELM_RELEASE, SECRET_SIG, Capture, CapturedResource

REDACTED = "<redacted>"
# libyaml's emitter is ~10x faster than the pure-Python one; large stacks write thousands of files.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=True)


def plain(value: Any) -> Any:
    """Wire-form inputs as plain YAML data: secrets redacted, whole floats back to integers."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return _redact(value.get("value"))
        return {key: plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _redact(value: Any) -> Any:
    # Keep the shape (a Secret's keys stay visible) but never the values.
    if isinstance(value, dict):
        return {key: REDACTED for key in value}
    return REDACTED


def manifest(resource: CapturedResource) -> dict[str, Any]:
    return plain(resource.inputs)


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def manifest_path(doc: dict[str, Any]) -> Path:
    meta = doc.get("metadata", {})
    folder = meta.get("namespace") or "_cluster"
    return (
        Path(_file_name(folder)) / f"{_file_name(doc['kind'].lower())}-{_file_name(meta.get('name', 'unnamed'))}.yaml"
    )


def helm_release(resource: CapturedResource) -> dict[str, Any]:
    keep = ("name", "namespace", "chart", "version", "repositoryOpts", "values", "createNamespace", "atomic", "timeout")
    return {key: plain(resource.inputs[key]) for key in keep if key in resource.inputs}


def write(capture: Capture, out_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Write every Kubernetes object under out_dir/manifests and every Helm release under out_dir/releases."""
    written = []
    for resource in capture.kubernetes():
        doc = manifest(resource)
        path = out_dir / "manifests" / manifest_path(doc)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(doc))
        written.append((path, doc))
    for resource in capture.resources:
        # Cloud resources (the EKS node group, its IAM role) are shown for review, not validated.
        if resource.custom and not resource.type.startswith(("kubernetes:", "random:")):
            path = out_dir / "cloud" / f"{_file_name(resource.type.split(':')[-1])}-{_file_name(resource.name)}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(dump({"type": resource.type, "name": resource.name, "inputs": plain(resource.inputs)}))
    for resource in capture.of_type(HELM_RELEASE):
        release = helm_release(resource)
        path = out_dir / "releases" / f"{_file_name(resource.name)}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(release))
    return written
