"""Building blocks shared by the configuration models.

The name, label and quantity types here hold every value the program renders to the same
rules the API server applies, so a stack that parses never produces an object Kubernetes
rejects. Patterns are matched with `re.fullmatch`: `$` would also accept a trailing newline.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

from infra.quantity import parse_quantity

PROJECT = "gpu-platform"
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# Leaves room for "-staging" and similar suffixes inside Kubernetes' 63-character namespace limit.
MAX_TENANT_NAME = 40
MAX_LABEL_VALUE = 63
MAX_SUBDOMAIN = 253
# Kubernetes stores quantities and counts in signed 64-bit integers (in milli-units for
# quantities); anything larger overflows in the API server or the scheduler.
MAX_INT64 = 2**63 - 1
MAX_QUANTITY = Decimal(MAX_INT64) / 1000
MAX_INT32 = 2**31 - 1
# Namespaces Kubernetes creates and owns; `kube-` is reserved for it as a whole.
KUBERNETES_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _non_negative_quantity(value: object) -> Decimal:
    amount = parse_quantity(value)  # type: ignore[arg-type]
    if not amount.is_finite():
        raise ValueError(f'{value!r} is not a finite quantity; write a number such as "500m", "2" or "16Gi"')
    if amount < 0:
        raise ValueError("must be >= 0")
    if amount > MAX_QUANTITY:
        raise ValueError(f"{value!r} is larger than Kubernetes can store (at most {MAX_QUANTITY:.3E})")
    return amount


Quantity = Annotated[Decimal, BeforeValidator(_non_negative_quantity), PlainSerializer(str)]
Count = Annotated[int, Field(ge=0, le=MAX_INT64)]
# Replica counts and other fields Kubernetes declares as int32.
Int32 = Annotated[int, Field(le=MAX_INT32)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Model(BaseModel):
    """Base for every config model: camelCase keys in YAML, no unknown keys, immutable, finite numbers."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        validate_default=True,
        allow_inf_nan=False,
    )


def dns_label(value: str, what: str, max_len: int = 63) -> str:
    if not DNS_LABEL.fullmatch(value) or len(value) > max_len:
        raise ValueError(
            f"{value!r} is not a valid {what}: use lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {max_len} characters"
        )
    return value


def dns_1035_label(value: str, what: str, max_len: int = 63) -> str:
    if not DNS_1035_LABEL.fullmatch(value) or len(value) > max_len:
        raise ValueError(
            f"{value!r} is not a valid {what}: it becomes a Service name, so use lowercase letters, digits and "
            f"'-', starting with a letter and ending with a letter or digit, at most {max_len} characters"
        )
    return value


def dns_subdomain(value: str, what: str) -> str:
    parts = value.split(".")
    if len(value) > MAX_SUBDOMAIN or not all(DNS_LABEL.fullmatch(part) for part in parts):
        raise ValueError(
            f"{value!r} is not a valid {what}: use dot-separated parts of lowercase letters, digits and '-', "
            f"each starting and ending with a letter or digit, at most {MAX_SUBDOMAIN} characters"
        )
    return value


def label_value(value: str, what: str = "label value") -> str:
    if not LABEL_VALUE.fullmatch(value) or len(value) > MAX_LABEL_VALUE:
        raise ValueError(
            f"{value!r} is not a valid {what} (it becomes a Kubernetes label value): use letters, digits, "
            f"'-', '_' and '.', starting and ending with a letter or digit, at most {MAX_LABEL_VALUE} characters"
        )
    return value


def qualified_name(value: str, what: str = "label key") -> str:
    """A label, annotation or taint key: an optional DNS-subdomain prefix and '/', then a name."""
    prefix, slash, name = value.rpartition("/")
    if (
        (
            slash
            and (
                not prefix or len(prefix) > MAX_SUBDOMAIN or not all(DNS_LABEL.fullmatch(p) for p in prefix.split("."))
            )
        )
        or not name
        or len(name) > MAX_LABEL_VALUE
        or not LABEL_VALUE.fullmatch(name)
    ):
        raise ValueError(
            f"{value!r} is not a valid {what}: an optional DNS prefix and '/', then at most 63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit (e.g. platform.io/pool)"
        )
    return value


def _node_key(value: str, what: str) -> str:
    """A key the platform puts on nodes: never one of Kubernetes' own, which kubelet and controllers manage."""
    qualified_name(value, what)
    prefix = value.rpartition("/")[0]
    if prefix in ("kubernetes.io", "k8s.io") or prefix.endswith((".kubernetes.io", ".k8s.io")):
        raise ValueError(f"{value!r}: keys under kubernetes.io/ and k8s.io/ belong to Kubernetes; use your own prefix")
    return value


def kubernetes_namespace(value: str) -> str | None:
    """Why `value` can never be a namespace the platform creates, or None."""
    if value in KUBERNETES_NAMESPACES or value.startswith("kube-"):
        return f"{value!r} is a Kubernetes namespace (default and kube-* belong to the cluster)"
    return None


def _platform_namespace(value: str) -> str:
    dns_label(value, "namespace name")
    reason = kubernetes_namespace(value)
    if reason:
        raise ValueError(f"{reason}; choose another name")
    return value


def _hostname(value: str) -> str:
    host = value[2:] if value.startswith("*.") else value
    dns_subdomain(host, "hostname")
    if re.fullmatch(r"[0-9.]+", host):
        raise ValueError(f"{value!r} is an IP address; Ingress and HTTPRoute hostnames must be DNS names")
    return value


def _cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block such as 10.0.0.1/32 or 172.18.0.0/16 ({exc})") from None
    return str(network)


def _rbac_subject(value: str) -> str:
    if not value.strip():
        raise ValueError("an RBAC user or group name cannot be empty")
    if value != value.strip() or any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError(f"{value!r} has leading or trailing whitespace or control characters; remove them")
    if value.lower().startswith("system:"):
        raise ValueError(
            f"{value!r} is a Kubernetes system identity (system:*); tenants' roles are only for their own people"
        )
    return value


def _model_name(value: str) -> str:
    if not value or len(value) > 256 or any(char.isspace() or not char.isprintable() for char in value):
        raise ValueError(
            f"{value!r} is not a usable model name: 1 to 256 printable characters without spaces "
            "(e.g. meta-llama/Llama-3.1-8B-Instruct)"
        )
    return value


def _image(value: str) -> str:
    if not value or len(value) > 1024 or any(char.isspace() or not char.isprintable() for char in value):
        raise ValueError(f"{value!r} is not an image reference: no spaces, e.g. ghcr.io/org/image:1.0")
    return value


def _kubernetes_version(value: str) -> str:
    known = schema_versions()
    if value not in known:
        raise ValueError(f"{value!r} has no schema to validate manifests against; use one of {', '.join(known)}")
    return value


def schema_versions() -> list[str]:
    """Kubernetes minor versions kubernetes-validate ships schemas for, e.g. ["1.25", …, "1.37"]."""
    import kubernetes_validate.utils

    minors = {tuple(int(p) for p in v.split(".")[:2]) for v in kubernetes_validate.utils.all_versions()}
    return [f"{major}.{minor}" for major, minor in sorted(minors)]


def _checked(check, *args):
    return AfterValidator(lambda value: check(value, *args))


DnsLabel = Annotated[str, _checked(dns_label, "name")]
Dns1035Label = Annotated[str, _checked(dns_1035_label, "name")]
DnsSubdomain = Annotated[str, _checked(dns_subdomain, "name")]
LabelValue = Annotated[str, _checked(label_value, "label value")]
# Label and taint keys the GPU pool sets on nodes.
QualifiedName = Annotated[str, _checked(_node_key, "key")]
Hostname = Annotated[str, AfterValidator(_hostname)]
Cidr = Annotated[str, AfterValidator(_cidr)]
PlatformNamespace = Annotated[str, AfterValidator(_platform_namespace)]
RbacSubject = Annotated[str, AfterValidator(_rbac_subject)]
ModelName = Annotated[str, AfterValidator(_model_name)]
ImageRef = Annotated[str, AfterValidator(_image)]
KubernetesVersion = Annotated[str, AfterValidator(_kubernetes_version)]
# Specific names, so that messages say what the value is.
StorageClassName = Annotated[str, _checked(dns_subdomain, "storage class name")]
SecretName = Annotated[str, _checked(dns_subdomain, "Secret name")]
IngressClassName = Annotated[str, _checked(dns_subdomain, "ingress class name")]
NodeName = Annotated[str, _checked(dns_subdomain, "node name")]


def _tenant_name(value: str) -> str:
    dns_label(value, "tenant name", MAX_TENANT_NAME)
    reason = kubernetes_namespace(value)
    if reason:
        raise ValueError(f"{reason}; a tenant's name is its namespace, so choose another")
    return value


# A tenant's name is the name of its prod namespace.
TenantName = Annotated[str, AfterValidator(_tenant_name)]


def _eks_cluster_name(value: str) -> str:
    # EKS' own rule for cluster names; the name also becomes a cluster-autoscaler tag key.
    if not re.fullmatch(r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}", value):
        raise ValueError(f"{value!r} is not an EKS cluster name: letters, digits, '-' and '_', at most 100 characters")
    return value


EksClusterName = Annotated[str, AfterValidator(_eks_cluster_name)]
# `<tenant>-<environment>` stays within 63 characters: 40 + 1 + 15 (see MAX_TENANT_NAME).
EnvironmentName = Annotated[str, _checked(dns_label, "environment name", 15)]
# An API key id becomes a key of the API-key Secret and part of a resource name.
ApiKeyId = Annotated[str, _checked(dns_label, "API key id", 20)]
