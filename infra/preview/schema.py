"""Strict schema validation of manifests with kubernetes-validate's bundled OpenAPI schemas.

kubernetes_validate.validate() re-reads and re-parses the multi-megabyte definitions file on
every call; the preview validates thousands of objects, so validators are built once per kind
here from the same schema files.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

DEFAULT_VERSION = "1.33"
# prometheus-operator's CRDs as vendored from kube-prometheus-stack (see components/vendor/SOURCES.md).
CRD_DIR = Path(__file__).resolve().parent.parent.parent / "components" / "vendor" / "crds"


class SchemaNotFound(Exception):
    pass


def _schema_dir(version: str) -> str:
    wanted = tuple(int(part) for part in version.split(".")[:2])
    candidates = [
        v for v in kubernetes_validate.utils.all_versions() if tuple(int(p) for p in v.split(".")[:2]) <= wanted
    ]
    if not candidates:
        raise SchemaNotFound(f"kubernetes-validate has no schemas for Kubernetes {version}")
    return f"v{candidates[-1]}-local-strict"


@lru_cache(maxsize=8)
def _definitions(schema_dir: str) -> Any:
    return _load(f"{schema_dir}/_definitions.json")


def _load(relative: str) -> Any:
    path = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema", relative)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SchemaNotFound(relative) from None


@lru_cache(maxsize=256)
def _validator(schema_dir: str, api_version: str, kind: str) -> jsonschema.Validator:
    # The same file naming kubernetes_validate uses: rbac.authorization.k8s.io/v1 -> rbac-v1.
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = _load(f"{schema_dir}/{kind.lower()}-{group_version}.json")
    registry = Resource.from_contents(_definitions(schema_dir)) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@lru_cache(maxsize=1)
def _crd_validators() -> dict[tuple[str, str], jsonschema.Validator]:
    validators = {}
    for path in sorted(CRD_DIR.rglob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def _strict(schema: Any) -> Any:
    """CRD schemas as the API server applies them with strict field validation: unknown fields are errors."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
        and set(result["properties"]) != {"metadata"}  # ObjectMeta is validated by the API server, not the CRD
    ):
        result["additionalProperties"] = False
    return result


def validate(doc: dict[str, Any], version: str = DEFAULT_VERSION) -> list[str]:
    """Every schema error of one manifest as `path: message`; raises SchemaNotFound for unknown kinds."""
    crd = _crd_validators().get((doc["apiVersion"], doc["kind"]))
    validator = crd or _validator(_schema_dir(version), doc["apiVersion"], doc["kind"])
    errors = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(part) for part in error.absolute_path) or "(root)"
        errors.append(f"{path}: {error.message}")
    return errors
