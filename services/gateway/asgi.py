"""The little of ASGI the gateway needs, spoken directly: no framework on the request path.

Starlette's routing, middleware stack and Request/Response objects cost about 25 µs per request
on the benchmark machine (a trivial endpoint served 17.7k requests/s through Starlette and 31k as a
plain ASGI callable, uvicorn and wrk on the same 2 cores); the gateway serves six fixed paths and
needs none of the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from time import monotonic

Headers = list[tuple[bytes, bytes]]
JSON = b"application/json"


class ClientGone(Exception):
    """The client disconnected before its request was read."""


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    headers: Headers = field(default_factory=list)
    content_type: bytes = JSON


async def send_reply(send, reply: Reply) -> None:
    headers = [(b"content-type", reply.content_type), (b"content-length", b"%d" % len(reply.body)), *reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes `limit` bytes (the rest is not read)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body if len(body) <= limit else None
    parts, size = [body], len(body)
    while True:
        if size > limit:
            return None
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        if not message.get("more_body"):
            return b"".join(parts) if size <= limit else None


async def send_stream(send, status: int, headers: Headers, chunks: AsyncIterator[bytes], watch) -> None:
    """Send chunks as they come (chunked transfer encoding).

    The server drops writes to a departed client silently, so the only sign that it left is
    http.disconnect on receive(): the caller watches for that and breaks the stream's source.
    A client that stays but stops reading makes a send wait for as long as it likes:
    `watch.sending` holds when the send now awaited began (0.0 between sends), for the caller's
    deadline.
    """
    try:
        watch.sending = monotonic()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        watch.sending = 0.0
        async for chunk in chunks:
            watch.sending = monotonic()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            watch.sending = 0.0
        watch.sending = monotonic()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watch.sending = 0.0
