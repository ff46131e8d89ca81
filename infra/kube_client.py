"""Just enough of a Kubernetes client for `platformctl usage --kubeconfig`: ResourceQuota status.

Plain HTTPS with the kubeconfig's CA, client certificate or bearer token; no client library, so
the CLI has nothing more to install than it already has.
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml


class KubeError(Exception):
    """A kubeconfig or API server problem; the message says which."""


class KubeconfigError(KubeError):
    """The kubeconfig cannot be used as given; the message names the file and key."""


@dataclass(frozen=True)
class Cluster:
    server: str
    ca_pem: bytes | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    token: str | None = None
    insecure: bool = False


def _pem(entry: dict[str, Any], key: str, base: Path, where: str) -> bytes | None:
    """`<key>-data` (base64) or `<key>` (a path, relative to the kubeconfig's folder)."""
    if entry.get(f"{key}-data"):
        try:
            return base64.b64decode(entry[f"{key}-data"], validate=True)
        except ValueError:
            raise KubeconfigError(f"{where}.{key}-data: not base64") from None
    if entry.get(key):
        path = Path(os.path.expanduser(entry[key]))
        path = path if path.is_absolute() else base / path
        try:
            return path.read_bytes()
        except OSError as exc:
            raise KubeconfigError(f"{where}.{key}: cannot read {path}: {exc.strerror}") from None
    return None


def _named(doc: dict, kind: str, name: str, source: str) -> dict:
    for item in doc.get(f"{kind}s") or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item.get(kind) or {}
    raise KubeconfigError(f"{source}: {kind}s: no {kind} named {name!r}")


def load_kubeconfig(path: Path, context: str | None = None) -> Cluster:
    source = str(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise KubeconfigError(f"{source}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{source}: expected a kubeconfig mapping")
    name = context or doc.get("current-context")
    if not name:
        raise KubeconfigError(f"{source}: current-context: not set (pass --context)")
    ctx = _named(doc, "context", name, source)
    if not ctx.get("cluster"):
        raise KubeconfigError(f"{source}: contexts[{name}].cluster: not set")
    cluster = _named(doc, "cluster", ctx["cluster"], source)
    user = _named(doc, "user", ctx["user"], source) if ctx.get("user") else {}
    if not cluster.get("server"):
        raise KubeconfigError(f"{source}: clusters[{ctx['cluster']}].server: not set")
    base = path.resolve().parent
    if "exec" in user or "auth-provider" in user:
        raise KubeconfigError(
            f"{source}: users[{ctx.get('user')}]: exec and auth-provider credentials are not supported; "
            "use a token or client certificate, or --prometheus"
        )
    return Cluster(
        server=cluster["server"].rstrip("/"),
        ca_pem=_pem(cluster, "certificate-authority", base, f"{source}: clusters[{ctx['cluster']}]"),
        client_cert_pem=_pem(user, "client-certificate", base, f"{source}: users[{ctx.get('user')}]"),
        client_key_pem=_pem(user, "client-key", base, f"{source}: users[{ctx.get('user')}]"),
        token=user.get("token"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


@contextlib.contextmanager
def _ssl_context(cluster: Cluster) -> Iterator[ssl.SSLContext | bool]:
    if cluster.insecure:
        yield False
        return
    context = ssl.create_default_context(cadata=cluster.ca_pem.decode() if cluster.ca_pem else None)
    if cluster.client_cert_pem and cluster.client_key_pem:
        # ssl wants files for the client pair; they live only as long as the request.
        with tempfile.TemporaryDirectory() as folder:
            cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
            cert.write_bytes(cluster.client_cert_pem)
            key.write_bytes(cluster.client_key_pem)
            key.chmod(0o600)
            context.load_cert_chain(cert, key)
            yield context
    else:
        yield context


def get(cluster: Cluster, paths: list[str], timeout: float = 10.0) -> dict[str, dict | None]:
    """GET each API path; a 404 is None (the kind or object does not exist)."""
    headers = {"Authorization": f"Bearer {cluster.token}"} if cluster.token else {}
    found: dict[str, dict | None] = {}
    with _ssl_context(cluster) as verify, httpx.Client(verify=verify, timeout=timeout, headers=headers) as client:
        for path in paths:
            try:
                response = client.get(f"{cluster.server}{path}")
            except httpx.HTTPError as exc:
                raise KubeError(f"cannot reach the API server at {cluster.server}: {exc}") from None
            if response.status_code == 404:
                found[path] = None
            elif response.status_code == 200:
                found[path] = response.json()
            else:
                raise KubeError(f"{path} answered {response.status_code}: {response.text[:200]}")
    return found


def resource_quotas(cluster: Cluster, namespaces: list[str], timeout: float = 10.0) -> dict[str, list[dict]]:
    """The ResourceQuota objects of each namespace (a missing namespace has none)."""
    headers = {"Authorization": f"Bearer {cluster.token}"} if cluster.token else {}
    found: dict[str, list[dict]] = {}
    with _ssl_context(cluster) as verify, httpx.Client(verify=verify, timeout=timeout, headers=headers) as client:
        for namespace in namespaces:
            url = f"{cluster.server}/api/v1/namespaces/{namespace}/resourcequotas"
            try:
                response = client.get(url)
            except httpx.HTTPError as exc:
                raise KubeError(f"cannot reach the API server at {cluster.server}: {exc}") from None
            if response.status_code == 404:
                found[namespace] = []
                continue
            if response.status_code != 200:
                raise KubeError(f"{url} answered {response.status_code}: {response.text[:200]}")
            found[namespace] = response.json().get("items") or []
    return found


def quota_status(items: list[dict]) -> tuple[dict[str, float], dict[str, float]]:
    """(used, hard) over a namespace's quotas: the tightest hard limit and the largest used figure."""
    from infra.quantity import parse_quantity

    used: dict[str, float] = {}
    hard: dict[str, float] = {}
    for item in items:
        spec = item.get("spec") or {}
        if spec.get("scopes") or spec.get("scopeSelector"):
            continue  # bounds only the pods it selects (the PriorityClass quota), not the namespace
        status = item.get("status") or {}
        for resource, text in (status.get("hard") or {}).items():
            value = float(parse_quantity(text))
            hard[resource] = min(hard.get(resource, value), value)
        for resource, text in (status.get("used") or {}).items():
            used[resource] = max(used.get(resource, 0.0), float(parse_quantity(text)))
    return used, hard
