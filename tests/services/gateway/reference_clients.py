"""Library-backed stand-ins for the gateway's own clients, for contract tests only.

`LibraryUpstreamClient` (aiohttp) and `LibraryRedisClient` (redis-py's asyncio client) offer the
interface the gateway uses of `UpstreamClient` and `RedisClient`, with the same exception classes,
so a contract test can run against both: a test that passes on the library and fails on the own
client shows where the own client diverges (uvicorn runs its two HTTP implementations through the
same tests for the same reason). They translate, they do not re-implement: framing, parsing,
pooling, timeouts and reconnecting are the library's. Where the library's model differs from the
own client's, the adapter says how.

`upstream_client(kind, ...)` and `redis_client(kind, ...)` open either implementation ("own" or
"library") as an async context manager that closes it at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.gateway.redis_client import RedisClient, RedisError, RedisReplyError
from services.gateway.upstream_client import UpstreamClient, UpstreamError, UpstreamTimeout, UpstreamTooLarge

KINDS = ("own", "library")


def _upstream_error(exc: BaseException) -> UpstreamError:
    # aiohttp's timeouts (connect, socket read) are TimeoutErrors; asyncio.timeout's too.
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"aiohttp: {exc!r}")
    return UpstreamError(f"aiohttp: {exc!r}")


class LibraryResponse:
    """UpstreamResponse's interface on an aiohttp ClientResponse."""

    def __init__(self, response: aiohttp.ClientResponse, started: float) -> None:
        self._response = response
        self.status = response.status
        self.started = started

    def headers(self, skip: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
        return [(name.lower(), value) for name, value in self._response.raw_headers if name.lower() not in skip]

    async def read(self, limit: int = 1 << 62, at: float | None = None) -> bytes:
        # `at` is a total deadline on the loop's clock, as in UpstreamResponse.read; aiohttp's own
        # per-read timeout (sock_read) still applies inside it.
        body, size = [], 0
        try:
            async with asyncio.timeout_at(at):
                async for data in self._response.content.iter_any():
                    size += len(data)
                    if size > limit:
                        self.abort()
                        raise UpstreamTooLarge(f"response larger than {limit} bytes")
                    body.append(data)
        except UpstreamError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self._response.close()
            raise _upstream_error(exc) from exc
        return b"".join(body)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._response.content.iter_any():
                yield data
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self._response.close()
            raise _upstream_error(exc) from exc

    def abort(self) -> None:
        self._response.close()

    def release(self) -> None:
        # aiohttp pools the connection only when the body was read to its end, else closes it:
        # the same rule as UpstreamResponse.release.
        self._response.release()


class LibraryUpstreamClient:
    """UpstreamClient's interface on one aiohttp ClientSession (created in the running loop)."""

    def __init__(self, connect_timeout: float, read_timeout: float, first_byte_timeout: float | None = None) -> None:
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.first_byte_timeout = first_byte_timeout or read_timeout
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                auto_decompress=False,  # the gateway relays bodies as the engine sent them
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout
                ),
            )
        return self._session

    async def post(self, url: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> LibraryResponse:
        parts = urlsplit(url)
        target = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path, "", ""))
        session = self._open()
        started = asyncio.get_running_loop().time()
        try:
            # The first-byte budget counts from the start here (connecting included), from the
            # request's write in UpstreamClient; the connect timeout bounds the difference.
            async with asyncio.timeout(self.first_byte_timeout):
                response = await session.post(
                    target,
                    data=body,
                    headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers],
                )
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise _upstream_error(exc) from exc
        return LibraryResponse(response, started)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _redis_error(exc: BaseException) -> RedisError:
    # redis-py strips an error reply's code into `status_code`; RedisClient's errors keep the reply's
    # text whole (NOSCRIPT, LOADING, ... first) and read `code` from it: put it back in front.
    code = getattr(exc, "status_code", None)
    text = f"{code} {exc}" if code else str(exc)
    if isinstance(exc, redis.exceptions.ResponseError):
        return RedisReplyError(text)
    return RedisError(f"redis-py: {text}")


class LibraryRedisClient:
    """RedisClient's interface on redis-py: call() and defer() return futures; the commands of one
    loop turn go out as one non-transactional pipeline, and pipelines go out one after another,
    so replies come in the order the calls were made, as on RedisClient's single connection."""

    def __init__(self, url: str, timeout: float) -> None:
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # RedisClient does not retry: a failed batch fails its callers, the next call reconnects.
            retry=Retry(NoBackoff(), 0),
            driver_info=None,  # no CLIENT SETINFO on connecting: RedisClient sends only AUTH and SELECT
        )
        # Raw replies (b"PONG", not True), as RedisClient returns them.
        self._redis.response_callbacks = {}
        self._batch: list[tuple[tuple, asyncio.Future]] = []
        self._deferred: list[tuple[tuple, asyncio.Future]] = []
        self._deferred_timer: asyncio.TimerHandle | None = None
        self._last: asyncio.Task | None = None

    def call(self, *args: bytes | str | int | float) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._batch:
            loop.call_soon(self._flush)
        self._batch.append((args, future))
        return future

    def defer(self, delay: float, *args: bytes | str | int | float) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._deferred.append((args, future))
        if self._deferred_timer is None:
            self._deferred_timer = loop.call_later(delay, self._flush_deferred)
        return future

    def _flush_deferred(self) -> None:
        self._deferred_timer = None
        if self._deferred and not self._batch:
            self._flush()

    def _flush(self) -> None:
        batch = self._deferred + self._batch
        self._deferred, self._batch = [], []
        if self._deferred_timer is not None:
            self._deferred_timer.cancel()
            self._deferred_timer = None
        self._last = asyncio.ensure_future(self._send(batch, self._last))

    async def _send(self, batch: list[tuple[tuple, asyncio.Future]], previous: asyncio.Task | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for args, _ in batch:
                    pipe.execute_command(*args)
                replies = await pipe.execute(raise_on_error=False)
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            error = _redis_error(exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(_redis_error(reply))
            else:
                future.set_result(reply)

    async def close(self) -> None:
        if self._last is not None:
            await asyncio.wait([self._last])
        await self._redis.aclose()


@contextlib.asynccontextmanager
async def upstream_client(kind: str, connect_timeout: float, read_timeout: float, first_byte_timeout=None):
    if kind == "own":
        client = UpstreamClient(connect_timeout, read_timeout, first_byte_timeout)
        try:
            yield client
        finally:
            client.close()
    else:
        client = LibraryUpstreamClient(connect_timeout, read_timeout, first_byte_timeout)
        try:
            yield client
        finally:
            await client.aclose()


@contextlib.asynccontextmanager
async def redis_client(kind: str, url: str, timeout: float):
    client = RedisClient(url, timeout) if kind == "own" else LibraryRedisClient(url, timeout)
    try:
        yield client
    finally:
        await client.close()
