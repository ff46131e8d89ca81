"""A keep-alive HTTP/1.1 client for the engines: one POST at a time per pooled connection.

Written here rather than taken from aiohttp because the gateway's latency and throughput targets
are set by the client's cost per request: in the same run aiohttp's ClientSession spent about
twice this client's CPU per call with 16 callers and three times with one (bench/gateway/clients.py,
bench/RESULTS.md). Parsing is httptools' (llhttp, the parser uvicorn uses); what is left here is
the connection pool, request framing, timeouts and back-pressure for one known request shape.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

# Pause reading from an engine when this much of a streamed response waits for a slow client.
HIGH_WATER = 256 * 1024
# A pooled connection idle this long is closed rather than reused: below the 5 s keep-alive timeout of
# uvicorn, which vLLM and SGLang serve with, so the engine never closes one just as it is picked.
IDLE_SECONDS = 4.0
# A reused connection that breaks this soon after the request was written most likely broke before
# the engine read it: the request is sent once more on a new connection. Later failures are not
# retried: the engine may have started generating, and the caller's fallback decides.
RETRY_WINDOW_SECONDS = 0.05
# An engine's response head (with any 1xx heads before it) is at most this large and has at most this
# many headers: httptools bounds neither, and an upstream sending headers without end would
# otherwise be buffered whole and forwarded to the client.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100


class UpstreamError(Exception):
    """The engine could not be reached, broke off, or sent something that is not HTTP."""


class UpstreamTimeout(UpstreamError, TimeoutError):
    """No byte from the engine (or no connection) within the timeout."""


class UpstreamTooLarge(UpstreamError):
    """A non-streamed response over the size the gateway relays."""


class UpstreamHeadTooLarge(UpstreamError):
    """A response head over MAX_HEAD_BYTES or MAX_HEADERS."""


class _Connection(asyncio.Protocol):
    __slots__ = (
        "pool", "loop", "transport", "parser", "response", "closed", "used", "idle_since", "interim", "head_bytes",
    )  # fmt: skip

    def __init__(self, pool: _Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        # Kept: on Python 3.11 every get_running_loop() is a getpid() system call.
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.closed = False
        self.used = False  # has carried a response before: a failure may just be a stale keep-alive
        self.idle_since = 0.0
        self.interim = False  # inside a 1xx response, which precedes the real one
        self.head_bytes = 0  # of the current response's head so far; -1 once its head is complete

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.response is None or self.response.complete:
            # Bytes nobody asked for: nothing on this connection can be trusted any more.
            self.abort()
            return
        if self.head_bytes >= 0:
            if self.head_bytes + len(data) > MAX_HEAD_BYTES:
                # Feed only what the head may still use; if the head ends within it, the rest follows.
                allowed = MAX_HEAD_BYTES - self.head_bytes
                if not self._feed(data[:allowed]):
                    return
                if self.head_bytes >= 0:
                    self._head_too_large()
                    return
                data = data[allowed:]
            else:
                self.head_bytes += len(data)
        self._feed(data)

    def _feed(self, data: bytes) -> bool:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if isinstance(exc.__context__, UpstreamHeadTooLarge):
                self._head_too_large()
            else:
                self._fail(UpstreamError(f"malformed response: {exc!r}"))
                self.abort()
            return False
        return True

    def _head_too_large(self) -> None:
        self._fail(UpstreamHeadTooLarge(f"response head over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} headers"))
        self.abort()

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        response = self.response
        if response is not None and not response.complete:
            if response.status and not response.framed and exc is None:
                response._finish()  # a body delimited by a clean end of the connection
            else:
                self._fail(UpstreamError("connection closed by the upstream"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            if len(self.response.raw_headers) >= MAX_HEADERS:
                raise UpstreamHeadTooLarge  # httptools wraps it; _feed tells it apart
            self.response.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the real response follows
            self.interim = True
            response.raw_headers.clear()
            return
        response.status = status
        self.head_bytes = -1
        # Asked now: once the message is complete the parser has reset and always says no.
        response.keep_alive = self.parser.should_keep_alive()
        for name, value in response.raw_headers:
            lowered = name.lower()
            if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
                response.framed = True
        response._wake()

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._feed(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
        elif self.response is not None:
            self.response._finish()

    def _fail(self, error: Exception) -> None:
        if self.response is not None:
            self.response._fail(error)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class UpstreamResponse:
    """Status and headers once they arrive; the body read whole or chunk by chunk; then release()."""

    __slots__ = (
        "_connection", "_timeout", "status", "raw_headers", "framed", "keep_alive", "complete",
        "_chunks", "_buffered", "_error", "_waiter", "_paused", "_streaming", "started",
    )  # fmt: skip

    def __init__(self, connection: _Connection, timeout: float) -> None:
        self._connection = connection
        self._timeout = timeout
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.framed = False  # content-length or chunked: the end is known without closing
        self.keep_alive = False
        self.complete = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._error: Exception | None = None
        self._waiter: asyncio.Future | None = None
        self._paused = False
        self._streaming = False  # read chunk by chunk: only then does a slow reader hold the engine back
        self.started = 0.0  # loop time the request was written: deadlines count from here

    # fed by the connection
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._streaming and self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._connection.transport.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self.complete = True
        self._wake()

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    async def _wait(self, at: float | None = None) -> None:
        """Wait for more from the engine: until loop time `at`, else for the idle timeout."""
        if self._error is not None:
            raise self._error
        loop = self._connection.loop
        waiter = self._waiter = loop.create_future()
        if at is None:
            timer = loop.call_later(self._timeout, self._timed_out, waiter, self._timeout)
        else:
            timer = loop.call_at(at, self._timed_out, waiter, 0.0)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _timed_out(self, waiter: asyncio.Future, seconds: float) -> None:
        if not waiter.done():
            problem = f"no byte within {seconds:g} s" if seconds else "response not complete by its deadline"
            self._fail(UpstreamTimeout(problem))
            self._connection.abort()

    async def _headers(self, at: float) -> None:
        while not self.status:
            await self._wait(at)

    # for the caller
    def headers(self, skip: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
        """Response headers, lower-cased, without the names in `skip`."""
        return [(name.lower(), value) for name, value in self.raw_headers if name.lower() not in skip]

    async def read(self, limit: int = 1 << 62, at: float | None = None) -> bytes:
        """The whole body, at most `limit` bytes, complete by loop time `at` (a total deadline: a trickle
        does not extend it; without one, each wait is the idle timeout)."""
        while not self.complete:
            if self._buffered > limit:
                self.abort()
                raise UpstreamTooLarge(f"response larger than {limit} bytes")
            await self._wait(at)
        if self._buffered > limit:
            raise UpstreamTooLarge(f"response larger than {limit} bytes")
        body = b"".join(self._chunks)
        self._chunks.clear()
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (several network reads may come together)."""
        self._streaming = True
        while True:
            if self._chunks:
                data = b"".join(self._chunks)
                self._chunks.clear()
                self._buffered = 0
                if self._paused:
                    self._paused = False
                    self._connection.transport.resume_reading()
                yield data
            elif self.complete:
                return
            else:
                await self._wait()

    def abort(self) -> None:
        """Stop now (the client went away): the engine sees its connection close and can stop generating."""
        self._fail(UpstreamError("aborted by the gateway"))
        self._connection.abort()

    def release(self) -> None:
        """Give the connection back for reuse if the response ended cleanly, else close it."""
        connection = self._connection
        if connection.response is not self:
            return
        connection.response = None
        if self.complete and self._error is None and self.keep_alive and not connection.closed:
            connection.idle_since = connection.loop.time()
            connection.pool.put(connection)
        else:
            connection.abort()


class _Pool:
    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, connect_timeout: float) -> None:
        self.host, self.port, self.tls, self.connect_timeout = host, port, tls, connect_timeout
        self.idle: list[_Connection] = []
        self.host_header = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode()

    def put(self, connection: _Connection) -> None:
        self.idle.append(connection)

    def forget(self, connection: _Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)

    async def connection(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        while self.idle:
            connection = self.idle.pop()
            if connection.closed:
                continue
            if loop.time() - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.abort()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self, loop), self.host, self.port, ssl=self.tls),
                self.connect_timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout(f"no connection within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect: {exc.strerror or exc}") from None
        return connection

    def close(self) -> None:
        for connection in self.idle:
            connection.abort()
        self.idle.clear()


class UpstreamClient:
    def __init__(self, connect_timeout: float, read_timeout: float, first_byte_timeout: float | None = None) -> None:
        """`read_timeout`: the longest wait for more of a streamed body; `first_byte_timeout`: for the status line."""
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.first_byte_timeout = first_byte_timeout or read_timeout
        self.pools: dict[str, tuple[_Pool, bytes]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _pool(self, url: str) -> tuple[_Pool, bytes]:
        found = self.pools.get(url)
        if found is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UpstreamError(f"unsupported upstream URL {url!r}: use http:// or https://host[:port]")
            tls = ssl.create_default_context() if parts.scheme == "https" else None
            port = parts.port or (443 if tls else 80)
            pool = _Pool(parts.hostname, port, tls, self.connect_timeout)
            found = self.pools[url] = (pool, parts.path.rstrip("/").encode())
        return found

    async def post(self, url: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> UpstreamResponse:
        """POST `body` to `url` + `path`; returns once status and headers are in (the body may still come)."""
        pool, prefix = self._pool(url)
        head = [b"POST ", prefix, path.encode(), b" HTTP/1.1\r\nhost: ", pool.host_header, b"\r\n"]
        for name, value in headers:
            head += (name, b": ", value, b"\r\n")
        head += (b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body)
        request = b"".join(head)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        may_retry = True
        while True:
            connection = await pool.connection(loop)
            reused = connection.used
            response = connection.response = UpstreamResponse(connection, self.read_timeout)
            connection.head_bytes = 0
            connection.transport.write(request)
            written = response.started = loop.time()
            try:
                await response._headers(written + self.first_byte_timeout)
            except UpstreamError as exc:
                response.release()
                quick = loop.time() - written < RETRY_WINDOW_SECONDS
                if may_retry and reused and quick and not isinstance(exc, (UpstreamTimeout, UpstreamHeadTooLarge)):
                    may_retry = False
                    continue  # a kept-alive connection that was already broken: once more on a new one
                raise
            except BaseException:  # cancelled: the connection must not stay open outside the pool
                response.release()
                raise
            connection.used = True
            return response

    def close(self) -> None:
        for pool, _ in self.pools.values():
            pool.close()
