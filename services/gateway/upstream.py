"""Talking to the engines: pick an upstream, fall back before the first byte, pass SSE through unbuffered."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import orjson

from services.gateway.routing import CircuitBreakers
from services.gateway.upstream_client import UpstreamClient, UpstreamError, UpstreamResponse, UpstreamTimeout

# Hop-by-hop and framing headers: the gateway's server frames its own response.
HOP_HEADERS = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"content-encoding", b"date", b"server"}
)


class UpstreamFailure(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Opened:
    name: str
    response: UpstreamResponse


class Upstreams:
    def __init__(self, connect_timeout: float, read_timeout: float, breakers: CircuitBreakers):
        self.client = UpstreamClient(connect_timeout, read_timeout)
        self.breakers = breakers

    def close(self) -> None:
        self.client.close()

    async def open(self, choices: list[tuple[str, str]], path: str, body: bytes, request_id: bytes) -> Opened:
        """POST to the first healthy choice (name, base URL); fall back on errors before any byte is sent on."""
        headers = [(b"content-type", b"application/json"), (b"x-request-id", request_id)]
        failure = UpstreamFailure(502, "no upstream available")
        for name, url in self.breakers.order(choices):
            try:
                response = await self.client.post(url, path, body, headers)
            except UpstreamTimeout:
                self.breakers.failed(url)
                failure = UpstreamFailure(504, f"upstream {name!r} timed out")
                continue
            except UpstreamError:
                self.breakers.failed(url)
                failure = UpstreamFailure(502, f"upstream {name!r} is unreachable")
                continue
            if response.status >= 500:
                response.release()
                self.breakers.failed(url)
                failure = UpstreamFailure(502, f"upstream {name!r} failed with {response.status}")
                continue
            self.breakers.succeeded(url)
            return Opened(name, response)
        raise failure


def usage_of(payload: bytes) -> tuple[int, int] | None:
    try:
        usage = orjson.loads(payload).get("usage") or {}
    except (ValueError, AttributeError):
        return None
    if not usage:
        return None
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


async def relay_events(
    response: UpstreamResponse, strip_usage: bool, on_usage: Callable[[int, int], None]
) -> AsyncIterator[bytes]:
    """Forward SSE events as they arrive; read usage on the way; drop a usage chunk the client did not ask for."""
    pending = b""
    async for chunk in response.chunks():
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
