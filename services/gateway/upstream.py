"""Talking to the engines: pick an upstream, fall back before the first byte, pass SSE through unbuffered."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from services.gateway.routing import CircuitBreakers
from services.gateway.upstream_client import (
    UpstreamClient,
    UpstreamError,
    UpstreamHeadTooLarge,
    UpstreamResponse,
    UpstreamTimeout,
)

# Hop-by-hop and framing headers: the gateway's server frames its own response.
HOP_HEADERS = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"content-encoding", b"date", b"server"}
)


class UpstreamFailure(Exception):
    def __init__(self, status: int, message: str, reached: bool):
        super().__init__(message)
        self.status = status
        self.reached = reached  # an engine may have started on it (a timeout): its charge stands


@dataclass
class Opened:
    name: str
    response: UpstreamResponse


class Upstreams:
    def __init__(
        self, connect_timeout: float, read_timeout: float, breakers: CircuitBreakers, first_byte_timeout: float
    ):
        self.client = UpstreamClient(connect_timeout, read_timeout, first_byte_timeout)
        self.breakers = breakers

    def close(self) -> None:
        self.client.close()

    async def open(self, choices: list[tuple[str, str]], path: str, body: bytes, request_id: bytes) -> Opened:
        """POST to the first healthy choice (name, base URL); fall back on errors before any byte is sent on."""
        headers = [(b"content-type", b"application/json"), (b"x-request-id", request_id)]
        failure, reached = None, False  # built only when it happens: an exception per request costs
        for name, url in self.breakers.order(choices):
            try:
                response = await self.client.post(url, path, body, headers)
            except UpstreamTimeout:
                self.breakers.failed(url)
                reached = True
                failure = UpstreamFailure(504, f"upstream {name!r} timed out", reached)
                continue
            except UpstreamHeadTooLarge as exc:
                self.breakers.failed(url)
                failure = UpstreamFailure(502, f"upstream {name!r} sent a {exc}", reached)
                continue
            except UpstreamError:
                self.breakers.failed(url)
                failure = UpstreamFailure(502, f"upstream {name!r} is unreachable", reached)
                continue
            if response.status >= 500:
                response.release()
                self.breakers.failed(url)
                failure = UpstreamFailure(502, f"upstream {name!r} failed with {response.status}", reached)
                continue
            self.breakers.succeeded(url)
            return Opened(name, response)
        raise failure or UpstreamFailure(502, "no upstream available", False)


def _usage(usage: object) -> tuple[int, int] | None:
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**40 for v in (prompt, completion)):
        return None  # an engine's nonsense is not counted
    return prompt, completion


def usage_of(payload: bytes) -> tuple[int, int] | None:
    """(prompt, completion) tokens from a response or chunk's `usage`, None without one."""
    try:
        return _usage(orjson.loads(payload).get("usage"))
    except (ValueError, AttributeError):
        return None


class EventTooLarge(Exception):
    """An SSE event grew past the gateway's limit without ending."""


# A blank line ends an event; lines end with CRLF, LF or CR. A CR is taken as a line end on its
# own unless an LF follows it: a CR at the very end of what has arrived may still be half of a
# CRLF, and the LF then arrives as a blank line of its own, which SSE ignores.
_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_LINE = re.compile(rb"\r\n|\r|\n")


def _data(event: bytes) -> bytes:
    """The event's data: its `data:` lines (with or without the space) joined by newlines."""
    lines = []
    for line in _LINE.split(event):
        if line.startswith(b"data:"):
            lines.append(line[6:] if line[5:6] == b" " else line[5:])
    return b"\n".join(lines)


class EventSplitter:
    """Whole SSE events out of arbitrary reads, each byte scanned once (the search resumes where it stopped)."""

    def __init__(self, max_event_bytes: int) -> None:
        self.max_event_bytes = max_event_bytes
        self.buffer = bytearray()
        self.scanned = 0

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self.buffer
        buffer += data
        events, start = [], 0
        # Back up 3 bytes: a boundary may straddle the previous read's end.
        position = max(self.scanned - 3, 0)
        while True:
            found = _EVENT_END.search(buffer, position)
            if found is None:
                break
            events.append(bytes(buffer[start : found.end()]))
            start = position = found.end()
        if start:
            del buffer[:start]
        self.scanned = len(buffer)
        if len(buffer) > self.max_event_bytes:
            raise EventTooLarge(f"an event passed {self.max_event_bytes} bytes")
        return events

    def rest(self) -> bytes:
        return bytes(self.buffer)


class Tally:
    """What a stream told about its tokens, read once when it ends.

    `usage` is the last report seen: an engine that reports on every chunk (vLLM's
    `continuous_usage_stats`) sends running totals, so only the last one counts. `outputs` counts
    the chunks that carried output, at least one token each: all that is known of a stream that
    ended before its report.
    """

    __slots__ = ("usage", "outputs")

    def __init__(self) -> None:
        self.usage: tuple[int, int] | None = None
        self.outputs = 0


def _carries_output(event: bytes) -> bool:
    # Engines write compact JSON (pydantic's model_dump_json): the role-only first chunk and the
    # finish chunk have an empty delta or text. A spaced engine's empty chunks count as one token
    # each, so the estimate errs high by a few, never low.
    if b'"delta":{}' in event or b'"content":""' in event or b'"text":""' in event:
        return False
    return b'"delta"' in event or b'"text"' in event


def _hide_usage(event: bytes, data: bytes, chunk: dict) -> bytes | None:
    """The event without its `usage` key, None for a usage-only chunk (no choices): the client never asked."""
    if chunk.get("choices") == []:
        return None
    del chunk["usage"]
    fresh = orjson.dumps(chunk)
    at = event.find(data)
    if at < 0:  # the JSON was split over several data: lines; one line carries it now
        return b"data: " + fresh + b"\n\n"
    return event[:at] + fresh + event[at + len(data) :]


async def relay_events(
    response: UpstreamResponse, strip_usage: bool, tally: Tally, max_event_bytes: int
) -> AsyncIterator[bytes]:
    """Forward SSE events as they arrive, byte for byte, keeping `tally`; when the gateway asked for
    usage the client did not (`strip_usage`), drop the usage-only chunk and the `usage` key of the others.

    Only an event that mentions usage is parsed, and with compact JSON and `"usage":null` (what
    engines send on every chunk when asked for usage) not even that.
    """
    splitter = EventSplitter(max_event_bytes)
    async for chunk in response.chunks():
        out = []
        for event in splitter.feed(chunk):
            if b'"usage"' in event:
                if strip_usage:
                    quick = event.replace(b',"usage":null', b"")
                    parse = b'"usage"' in quick
                    if not parse:
                        event = quick
                else:
                    parse = b'"usage":null' not in event
                if parse:
                    data = _data(event)
                    try:
                        parsed = orjson.loads(data)
                    except ValueError:
                        parsed = None
                    if isinstance(parsed, dict) and "usage" in parsed:
                        counted = _usage(parsed["usage"])
                        if counted:
                            tally.usage = counted
                        if strip_usage:
                            event = _hide_usage(event, data, parsed)
                            if event is None:
                                continue
            if _carries_output(event):
                tally.outputs += 1
            out.append(event)
        if out:
            yield b"".join(out)
    rest = splitter.rest()
    if rest.strip():
        yield rest
