"""Talking to the engines: pick an upstream, fall back before the first byte, pass SSE through unbuffered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp

from services.gateway.routing import CircuitBreakers

HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


class UpstreamFailure(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Opened:
    name: str
    response: aiohttp.ClientResponse


class Upstreams:
    def __init__(self, connect_timeout: float, read_timeout: float, breakers: CircuitBreakers):
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.breakers = breakers
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # One pooled session for all upstreams; aiohttp's client is markedly cheaper per request than httpx's.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def open(self, choices: list[tuple[str, str]], path: str, body: bytes, request_id: str) -> Opened:
        """POST to the first healthy choice (name, base URL); fall back on errors before any byte is sent on."""
        assert self.session is not None
        ordered = self.breakers.order([url for _, url in choices])
        names = {url: name for name, url in choices}
        failure = UpstreamFailure(502, "no upstream available")
        for url in ordered:
            try:
                response = await self.session.post(
                    url + path, data=body, headers={"Content-Type": "application/json", "X-Request-Id": request_id}
                )
            except (TimeoutError, aiohttp.ServerTimeoutError):
                self.breakers.failed(url)
                failure = UpstreamFailure(504, f"upstream {names[url]!r} timed out")
                continue
            except aiohttp.ClientError:
                self.breakers.failed(url)
                failure = UpstreamFailure(502, f"upstream {names[url]!r} is unreachable")
                continue
            if response.status >= 500:
                response.release()
                self.breakers.failed(url)
                failure = UpstreamFailure(502, f"upstream {names[url]!r} failed with {response.status}")
                continue
            self.breakers.succeeded(url)
            return Opened(names[url], response)
        raise failure


def response_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS}


def usage_of(payload: bytes) -> tuple[int, int] | None:
    try:
        usage = json.loads(payload).get("usage") or {}
    except (ValueError, AttributeError):
        return None
    if not usage:
        return None
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


async def relay_events(
    response: aiohttp.ClientResponse, strip_usage: bool, on_usage: Callable[[int, int], None]
) -> AsyncIterator[bytes]:
    """Forward SSE events as they arrive; read usage on the way; drop a usage chunk the client did not ask for."""
    pending = b""
    async for chunk in response.content.iter_any():
        pending += chunk
        if b"\n\n" not in pending:
            continue
        *events, pending = pending.split(b"\n\n")
        out = []
        for event in events:
            if b'"usage"' in event and event.startswith(b"data: {"):
                counted = usage_of(event[6:])
                if counted:
                    on_usage(*counted)
                    if strip_usage and b'"choices":[]' in event.replace(b" ", b""):
                        continue
            out.append(event + b"\n\n")
        if out:
            yield b"".join(out)
    if pending.strip():
        yield pending
