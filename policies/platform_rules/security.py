"""Workload security and secrets hygiene."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .config import PolicyConfig
from .contract import image_pinned
from .model import Resource, containers
from .rule import rule

SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|passw(or)?d|credential)", re.I)
# Credential formats that are unmistakable wherever they appear: OpenAI-style and Hugging Face keys,
# bearer tokens, AWS access key ids, GitHub and Slack tokens.
TOKEN = (
    r"sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,}|Bearer\s+[A-Za-z0-9._~+/=-]{16,}|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}"
)
SECRET_VALUE = re.compile(rf"^({TOKEN})$")
TOKEN_ANYWHERE = re.compile(rf"(?<![A-Za-z0-9])({TOKEN})")
# Segments of a flag or variable name that mark its value as a credential ("--hf-token", "API_KEY=").
SECRET_SEGMENTS = {"token", "apikey", "password", "passwd", "pwd", "secret", "credential", "credentials"}
# ... unless the value only names where the credential is ("--token-file", "--hf-token-secret-name").
REFERENCE_SEGMENTS = {"file", "path", "dir", "name", "ref", "env", "id"}
ASSIGNMENT = re.compile(r"(?<![A-Za-z0-9])(-{0,2}[A-Za-z][A-Za-z0-9_.-]*)=([^\s'\"]+)")
FLAG = re.compile(r"-{1,2}[A-Za-z][A-Za-z0-9_.-]*")


def workload_problems(resource: Resource) -> Iterator[str]:
    pod = resource.pod_spec()
    if pod is None:
        return
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            yield f"{resource.display} sets {field}"
    for volume in pod.get("volumes") or []:
        if isinstance(volume, dict) and "hostPath" in volume:
            yield f"{resource.display} mounts hostPath volume {volume.get('name')!r}"
    pod_non_root = (pod.get("securityContext") or {}).get("runAsNonRoot") is True
    for container in containers(pod):
        name = container.get("name")
        context: dict[str, Any] = container.get("securityContext") or {}
        if context.get("privileged"):
            yield f"{resource.display} container {name!r} is privileged"
        if context.get("allowPrivilegeEscalation") is not False:
            yield f"{resource.display} container {name!r} does not set allowPrivilegeEscalation: false"
        if not (pod_non_root or context.get("runAsNonRoot") is True):
            yield f"{resource.display} container {name!r} may run as root (set runAsNonRoot: true)"
        resources = container.get("resources") or {}
        for section in ("requests", "limits"):
            missing = [r for r in ("cpu", "memory") if r not in (resources.get(section) or {})]
            if missing:
                yield f"{resource.display} container {name!r} has no {section} for {', '.join(missing)}"
        image = str(container.get("image", ""))
        if not image_pinned(image):
            yield f"{resource.display} container {name!r} image {image!r} is not pinned (use a tag other than latest, or a digest)"


@rule(
    name="workload-security",
    description=(
        "Workloads in tenant namespaces: not privileged, no host namespaces or hostPath, non-root, no privilege "
        "escalation, requests and limits, pinned images."
    ),
    level="mandatory",
    severity="high",
)
def workload_security(resources: list[Resource], config: PolicyConfig) -> Iterator[tuple[str, str]]:
    """Mandatory inside tenant namespaces."""
    tenants = config.tenants
    for resource in resources:
        if resource.namespace in tenants:
            for problem in workload_problems(resource):
                yield resource.display, f"{problem} (tenant {tenants[resource.namespace]!r})"


# CrossGuard gives a policy one enforcement level, so the tenant and platform halves are two rules.
@rule(
    name="workload-security-platform",
    description="The workload-security checks for the platform's own namespaces (advisory).",
    level="advisory",
    severity="medium",
)
def workload_security_platform(resources: list[Resource], config: PolicyConfig) -> Iterator[tuple[str, str]]:
    """The same checks, advisory, for the platform's own namespaces."""
    tenants = config.tenants
    for resource in resources:
        if resource.namespace not in tenants:
            for problem in workload_problems(resource):
                yield resource.display, problem


def _secret_name(name: str) -> bool:
    segments = [s for s in re.split(r"[-_.]+", name.lower()) if s]
    if any(s in REFERENCE_SEGMENTS for s in segments):
        return False
    pairs = zip(segments, segments[1:], strict=False)
    return any(s in SECRET_SEGMENTS for s in segments) or any(a == "api" and b == "key" for a, b in pairs)


def _literal(value: str) -> bool:
    """A value written into the manifest, not a reference: $(VAR) is expanded from env, a path names a file."""
    value = value.strip().strip("'\"")
    return bool(value) and value[0] not in "$/" and not value.isdigit() and value.lower() not in ("true", "false")


def credentials_in_argv(argv: list) -> Iterator[str]:
    """What in a container's command or args looks like a credential: a token, or a secret flag's literal value."""
    words = [str(word) for word in argv]
    for index, word in enumerate(words):
        if TOKEN_ANYWHERE.search(word):
            yield f"argument {index + 1} holds a token"
            continue
        named = [name for name, value in ASSIGNMENT.findall(word) if _secret_name(name) and _literal(value)]
        if named:
            yield f"argument {index + 1} sets {named[0].lstrip('-')!r} to a literal value"
        elif (
            FLAG.fullmatch(word)
            and _secret_name(word)
            and index + 1 < len(words)
            and not words[index + 1].startswith("-")
            and _literal(words[index + 1])
            and not TOKEN_ANYWHERE.search(words[index + 1])  # reported as a token on its own
        ):
            yield f"argument {index + 2} is the literal value of {word!r}"


@rule(
    name="secrets-hygiene",
    description=(
        "No API key, token or password in a ConfigMap, a plain container env value, or a container's command or args."
    ),
    level="mandatory",
    severity="high",
    scope="resource",
)
def secrets_hygiene(resource: Resource, config: PolicyConfig) -> Iterator[str]:
    if resource.kind == "ConfigMap":
        for key, value in (resource.props.get("data") or {}).items():
            if SECRET_NAME.search(str(key)) or SECRET_VALUE.match(str(value).strip()):
                yield f"{resource.display} holds {key!r}, which looks like a credential; keep it in a Secret"
    pod = resource.pod_spec()
    for container in containers(pod) if pod else []:
        for env in container.get("env") or []:
            if (
                isinstance(env, dict)
                and "value" in env
                and (
                    SECRET_NAME.search(str(env.get("name", "")))
                    or SECRET_VALUE.match(str(env.get("value", "")).strip())
                )
            ):
                yield (
                    f"{resource.display} container {container.get('name')!r} sets {env.get('name')!r} as a plain value; "
                    "use valueFrom.secretKeyRef"
                )
        for field in ("command", "args"):
            for finding in credentials_in_argv(container.get(field) or []):
                yield (
                    f"{resource.display} container {container.get('name')!r} {field}: {finding}; pass credentials "
                    "through env valueFrom.secretKeyRef (and $(VAR) in args) instead"
                )
