"""In a cluster: the ready pods behind each worker Service, from a watch on EndpointSlices.

The gateway's ServiceAccount may only get/list/watch `endpointslices` (GatewayStack's ClusterRole),
so this lists them once, then watches from that resourceVersion; every event republishes the pods
of the Services it touches at once, so a pod that turns unready leaves the pool before the next
request. A broken watch (the API server ends watches every few minutes, or returns 410 Gone for an
expired resourceVersion) is started again with a fresh list.

Written on asyncio streams rather than a Kubernetes client library: it needs two GET requests,
and the official clients are synchronous or bring a second HTTP stack into the gateway.

Worker URLs name their Service as `http://<service>.<namespace>.svc[.cluster.local]:<port>`; other
URLs are left to the static `endpoints` of the document (or used as they are).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from services.gateway.endpoints import Endpoints

LOG = logging.getLogger("gateway")
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
PATH = "/apis/discovery.k8s.io/v1/endpointslices"


def service_of(url: str) -> tuple[str, str, int] | None:
    """(namespace, service, port) of a cluster Service URL, else None."""
    parts = urlsplit(url)
    labels = (parts.hostname or "").split(".")
    if len(labels) < 3 or labels[2] != "svc" or labels[3:] not in ([], ["cluster", "local"]):
        return None
    return labels[1], labels[0], parts.port or (443 if parts.scheme == "https" else 80)


class SliceTable:
    """EndpointSlices as last seen, and the pod URLs they make for each worker URL."""

    def __init__(self, endpoints: Endpoints, worker_urls: Callable[[], list[str]]) -> None:
        self.endpoints = endpoints
        self.worker_urls = worker_urls
        self.slices: dict[tuple[str, str], dict] = {}  # (namespace, slice name) -> slice

    def apply(self, kind: str, item: dict) -> None:
        meta = item.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if kind == "DELETED":
            self.slices.pop(key, None)
        else:
            self.slices[key] = item

    def pods(self, namespace: str, service: str, port: int, scheme: str) -> list[str]:
        found = []
        for (ns, _), item in self.slices.items():
            labels = (item.get("metadata") or {}).get("labels") or {}
            if ns != namespace or labels.get("kubernetes.io/service-name") != service:
                continue
            ports = [p.get("port") for p in item.get("ports") or [] if p.get("port")]
            # Slices carry target ports: the Service's port if it is among them, else the only one.
            target = port if port in ports or not ports else (ports[0] if len(ports) == 1 else None)
            if target is None:
                continue
            for endpoint in item.get("endpoints") or []:
                # An absent condition means ready (the API's own convention).
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                for address in endpoint.get("addresses") or []:
                    host = f"[{address}]" if ":" in address else address
                    found.append(f"{scheme}://{host}:{target}")
        return sorted(found)

    def publish(self) -> None:
        for url in self.worker_urls():
            where = service_of(url)
            if where is not None:
                self.endpoints.set_discovered(url, self.pods(*where, urlsplit(url).scheme))


class ApiClient:
    def __init__(self, base: str, token_file: Path, context: ssl.SSLContext | None) -> None:
        parts = urlsplit(base)
        self.host, self.https = parts.hostname, parts.scheme == "https"
        self.port = parts.port or (443 if self.https else 80)
        self.token_file, self.context = token_file, context

    def token(self) -> str | None:
        # Read at every connection: the kubelet rotates projected ServiceAccount tokens in place.
        try:
            return self.token_file.read_text().strip() or None
        except OSError:
            return None

    async def get(self, path: str) -> tuple[int, AsyncIterator[bytes]]:
        """(status, body pieces as they arrive): chunked or length-delimited, to the end of the connection."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.context if self.https else None), 10
        )
        token = self.token()
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{auth}Accept: application/json\r\nConnection: close\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}

        async def body() -> AsyncIterator[bytes]:
            try:
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        if size == 0:
                            return
                        piece = await reader.readexactly(size + 2)
                        yield piece[:-2]
                elif "content-length" in headers:
                    yield await reader.readexactly(int(headers["content-length"]))
                else:
                    yield await reader.read()
            finally:
                writer.close()

        return status, body()


async def watch(client: ApiClient, table: SliceTable) -> None:
    """List, publish, then follow the watch until it ends; raises on errors (the caller restarts it)."""
    status, body = await client.get(PATH)
    raw = b"".join([piece async for piece in body])
    if status != 200:
        raise ConnectionError(f"list endpointslices: HTTP {status}: {raw[:200]!r}")
    listed = orjson.loads(raw)
    table.slices.clear()
    for item in listed.get("items") or []:
        table.apply("ADDED", item)
    table.publish()
    version = (listed.get("metadata") or {}).get("resourceVersion", "")
    status, body = await client.get(f"{PATH}?watch=1&allowWatchBookmarks=true&resourceVersion={version}")
    if status != 200:
        raise ConnectionError(f"watch endpointslices: HTTP {status}")
    pending = b""
    async for piece in body:
        pending += piece
        *events, pending = pending.split(b"\n")
        for line in events:
            if not line.strip():
                continue
            event = orjson.loads(line)
            kind = event.get("type")
            if kind == "ERROR":  # 410 Gone: the resourceVersion is too old; list again
                raise ConnectionError(f"watch endpointslices: {event.get('object', {}).get('message')}")
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                table.apply(kind, event.get("object") or {})
                table.publish()


async def run(client: ApiClient, table: SliceTable, retry_seconds: float = 1.0) -> None:
    while True:
        try:
            await watch(client, table)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: keep the last pods, list again shortly
            LOG.warning("endpointslice watch restarting", extra={"problem": repr(exc)})
        await asyncio.sleep(retry_seconds)


def watch_from_environment(endpoints: Endpoints, document) -> asyncio.Future | None:
    """The watcher's coroutine when running in a cluster (or GATEWAY_KUBERNETES_API is set), else None.

    GATEWAY_DISCOVERY=off turns it off; GATEWAY_KUBERNETES_API and GATEWAY_KUBERNETES_TOKEN_FILE
    point it at another API server (tests)."""
    if os.environ.get("GATEWAY_DISCOVERY", "auto").lower() == "off":
        return None
    base = os.environ.get("GATEWAY_KUBERNETES_API")
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if base is None and host:
        base = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
    if base is None:
        return None
    token_file = Path(os.environ.get("GATEWAY_KUBERNETES_TOKEN_FILE", SERVICE_ACCOUNT / "token"))
    context = None
    if base.startswith("https"):
        ca = SERVICE_ACCOUNT / "ca.crt"
        context = ssl.create_default_context(cafile=str(ca) if ca.exists() else None)

    def worker_urls() -> list[str]:
        return sorted({url for tenant in document().tenants.values() for url in tenant.upstreams.values()})

    return run(ApiClient(base, token_file, context), SliceTable(endpoints, worker_urls))
