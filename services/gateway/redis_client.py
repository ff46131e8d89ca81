"""A minimal Redis client for the rate limiter: one connection, commands pipelined per event-loop turn.

Written here rather than taken from redis-py because the limit check sits on every request's
path: in the same run redis-py's asyncio pipeline spent about seven times this client's CPU per
EVALSHA with 16 callers and two to three times with one (bench/gateway/clients.py, bench/RESULTS.md).
Replies are parsed by hiredis (Redis' own C parser); what is left here is RESP framing of
commands, batching all commands issued in one loop turn into one write, in-order replies,
a timeout per batch, and reconnecting on the next call after a failure.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from urllib.parse import unquote, urlsplit

import hiredis


class RedisError(Exception):
    """Redis is unreachable, timed out, or answered with an error."""


class RedisReplyError(RedisError):
    """An error reply, e.g. NOSCRIPT or WRONGTYPE: `code` is its first word, as Redis defines error codes."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = message.split(" ", 1)[0] if message[:1].isupper() else "ERR"


def encode(*args: bytes | str | int | float) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.pending: deque[asyncio.Future] = deque()  # one per command written, in order
        # Commands written and replies read so far; each batch's timer checks its own end against them,
        # whatever became of its callers' futures (a cancelled caller still has a reply coming).
        self.sent = 0
        self.answered = 0
        self.batches: deque[tuple[int, asyncio.TimerHandle]] = deque()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while pending:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.fail(RedisError(f"redis sent something that is not RESP: {exc}"))
                self.transport.abort()
                return
            if reply is False:
                break
            future = pending.popleft()
            self.answered += 1
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(RedisReplyError(str(reply)))
            else:
                future.set_result(reply)
        batches = self.batches
        while batches and batches[0][0] <= self.answered:
            batches.popleft()[1].cancel()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisError(f"connection to redis lost: {exc}" if exc else "connection to redis closed"))
        if self.client.protocol is self:
            self.client.protocol = None

    def send(self, batch: list[tuple[bytes, asyncio.Future]], loop: asyncio.AbstractEventLoop) -> None:
        self.pending.extend(future for _, future in batch)
        self.sent += len(batch)
        self.batches.append((self.sent, loop.call_later(self.client.timeout, self.timed_out, self.sent)))
        self.transport.write(b"".join(command for command, _ in batch))

    def fail(self, error: Exception) -> None:
        while self.batches:
            self.batches.popleft()[1].cancel()
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(error)

    def timed_out(self, end: int) -> None:
        if self.answered < end:
            # Replies would no longer line up with commands: drop the connection and everything on it.
            self.fail(RedisError(f"redis did not answer within {self.client.timeout:g} s"))
            if self.transport is not None:
                self.transport.abort()


class RedisClient:
    """`redis://[[user]:password@]host[:port][/db]` or `rediss://…` (TLS)."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(f"redis URL {url!r}: expected redis://host[:port][/db] or rediss://…")
        self.host, self.port = parts.hostname, parts.port or 6379
        self.tls = ssl.create_default_context() if parts.scheme == "rediss" else None
        self.timeout = timeout
        self.hello: list[bytes] = []  # commands every new connection sends first
        if parts.password is not None:
            password = unquote(parts.password)
            user = unquote(parts.username) if parts.username else None
            self.hello.append(encode("AUTH", user, password) if user else encode("AUTH", password))
        db = parts.path.strip("/")
        if db:
            if not db.isdigit():
                raise ValueError(f"redis URL {url!r}: the database must be a number, not {db!r}")
            self.hello.append(encode("SELECT", db))
        self.protocol: _Protocol | None = None
        self._connecting: asyncio.Task | None = None
        self._batch: list[tuple[bytes, asyncio.Future]] = []
        # Commands that may wait: they go with the next batch, or alone after a short delay.
        self._deferred: list[tuple[bytes, asyncio.Future]] = []
        self._deferred_timer: asyncio.TimerHandle | None = None
        # Looked up once: on Python 3.11 every get_running_loop() is a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None

    def call(self, *args: bytes | str | int | float) -> asyncio.Future:
        """Send a command with the others of this loop turn; the future holds the reply or a RedisError."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._batch:
            loop.call_soon(self._flush)
        self._batch.append((encode(*args), future))
        return future

    def defer(self, delay: float, *args: bytes | str | int | float) -> asyncio.Future:
        """Like call(), but the command rides along with the next batch, or goes `delay` seconds from now
        at the latest: a command nobody waits for then costs no write and no wake-up of its own."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._deferred.append((encode(*args), future))
        if self._deferred_timer is None:
            self._deferred_timer = loop.call_later(delay, self._flush_deferred)
        return future

    def _flush_deferred(self) -> None:
        self._deferred_timer = None
        if self._deferred and not self._batch:  # with a batch pending, its flush takes them along
            self._flush()

    def _flush(self) -> None:
        if self._deferred:
            self._batch[:0], self._deferred = self._deferred, []
            if self._deferred_timer is not None:
                self._deferred_timer.cancel()
                self._deferred_timer = None
        batch, self._batch = self._batch, []
        protocol = self.protocol
        if protocol is None:
            asyncio.ensure_future(self._connect_then_send(batch))
        else:
            protocol.send(batch, self._loop)

    async def _connect_then_send(self, batch: list[tuple[bytes, asyncio.Future]]) -> None:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connected)
        try:
            protocol = await asyncio.shield(self._connecting)
        except Exception as exc:  # noqa: BLE001 - every waiter hears why
            error = exc if isinstance(exc, RedisError) else RedisError(f"cannot connect to redis: {exc}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        protocol.send(batch, self._loop)

    def _connected(self, task: asyncio.Task) -> None:
        self._connecting = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self), self.host, self.port, ssl=self.tls), self.timeout
            )
        except TimeoutError:
            raise RedisError(f"no connection to redis within {self.timeout:g} s") from None
        except OSError as exc:
            raise RedisError(f"cannot connect to redis at {self.host}:{self.port}: {exc.strerror or exc}") from None
        if self.hello:
            replies = [loop.create_future() for _ in self.hello]
            protocol.send(list(zip(self.hello, replies, strict=True)), loop)
            try:
                await asyncio.gather(*replies)
            except RedisReplyError as exc:
                protocol.transport.abort()
                raise RedisError(f"redis refused the connection setup (AUTH or SELECT): {exc}") from None
        self.protocol = protocol
        return protocol

    async def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None
