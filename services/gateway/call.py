"""One request inside the gateway (`Call`), what accounting needs of it (`Outcome`), and the refusals
it may get before any engine sees it, in OpenAI's error shape with the rate-limit headers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from services.gateway.asgi import Headers, Reply
from services.gateway.config import TenantEntry
from services.gateway.errors import error
from services.gateway.ratelimit import Decision
from services.gateway.server_protocol import ABORT_CONNECTION, DISCONNECT_HOOKS
from services.gateway.upstream_client import UpstreamResponse

LOG = logging.getLogger("gateway")


def too_many(tenant: TenantEntry, decision: Decision, ids: Headers) -> Reply:
    limits = tenant.limits
    headers = [(b"retry-after", b"%d" % max(1, int(decision.reset_seconds + 0.999))), *ids]
    for kind, limit, remaining in (
        (b"requests", limits.rpm, decision.remaining_requests),
        (b"tokens", limits.tpm, decision.remaining_tokens),
    ):
        if limit is not None:
            headers += (
                (b"x-ratelimit-limit-" + kind, b"%d" % limit),
                (b"x-ratelimit-remaining-" + kind, b"%d" % remaining),
                (b"x-ratelimit-reset-" + kind, b"%.0fs" % decision.reset_seconds),
            )
    return error(
        429,
        f"rate limit reached for {decision.reason} per minute",
        code=f"rate_limit_{decision.reason}",
        headers=headers,
    )


def queue_full(ids: Headers) -> Reply:
    return error(
        429,
        "too many requests in flight for this tenant",
        code="rate_limit_concurrency",
        headers=[(b"retry-after", b"1"), *ids],
    )


def shutting_down(ids: Headers) -> Reply:
    return error(
        503, "the gateway is shutting down; retry the request", code="server_shutting_down",
        headers=[(b"retry-after", b"1"), *ids],
    )  # fmt: skip


class Call:
    """One request from the moment its body is read: who, what, and how to stop it.

    The client's departure (http.disconnect on receive()) and the end of a drain both stop it
    through `end()`: once a response is open, by aborting that response (the engine sees its
    connection close and stops generating); before, by cancelling the request's task, which
    gives back its queue place or slot and its charge on the way out. A client that stops
    reading is stopped through `stall()`: its task waits in the server's send, where neither
    the engine's bytes nor their absence can reach it, so the task is cancelled there.
    """

    __slots__ = (
        "tenant",
        "model",
        "ids",
        "started",
        "task",
        "response",
        "finished",
        "left",
        "drained",
        "watcher",
        "served",
        "sending",
        "stalled",
        "recorded",
        "abort_connection",
    )

    def __init__(self, started: float) -> None:
        self.tenant = self.model = ""
        self.ids: Headers = []  # the x-request-id header, passed on and echoed
        self.started = started
        self.task: asyncio.Task | None = None
        self.response: UpstreamResponse | None = None
        self.finished = False  # the last byte is handed to the server: nothing left to stop
        self.left = False
        self.drained = False
        self.watcher: asyncio.Future | None = None
        self.served = 0  # prompt + completion tokens the engine reported, for the fair queue's settle
        # time.monotonic() when the send to the client now awaited began, 0.0 outside one: one sweep
        # over all calls finds those the client has stopped reading (no timer per chunk).
        self.sending = 0.0
        self.stalled = False
        # gateway_requests_total has this request: the catch-all for cancelled ones must not count it twice.
        self.recorded = False
        # Drops the client's connection (the server protocol's, where it is the gateway's own).
        self.abort_connection: Callable[[], None] | None = None

    @property
    def request_id(self) -> bytes:
        return self.ids[0][1]

    def watch(self, scope, receive) -> None:
        self.task = asyncio.current_task()
        self.abort_connection = scope.get(ABORT_CONNECTION)
        hooks = scope.get(DISCONNECT_HOOKS)
        if hooks is not None:  # the gateway's own server protocol says when the connection is lost
            hooks.append(self._gone)
            return
        self.watcher = asyncio.ensure_future(receive())
        self.watcher.add_done_callback(self._message)

    def _gone(self) -> None:
        if not self.finished:
            self.left = True
            self.end()

    def _message(self, message: asyncio.Future) -> None:
        if message.cancelled() or message.exception() is not None:
            return
        if message.result().get("type") == "http.disconnect":
            self._gone()

    def end(self) -> None:
        if self.finished:
            return
        if self.response is not None:
            self.response.abort()
        elif self.task is not None:
            self.task.cancel()

    def stall(self) -> None:
        """The client accepted no byte for too long: end it as if it had left (499)."""
        if self.stalled:
            return
        self.stalled = self.left = True
        if self.response is not None:
            self.response.abort()
        if self.task is not None:
            self.task.cancel()
        if self.abort_connection is not None:
            self.abort_connection()

    def close(self) -> None:
        self.finished = True
        if self.watcher is not None:
            self.watcher.cancel()


class Outcome:
    """What accounting needs at the end: whether an engine may have worked on it, the usage it reported,
    and the prompt estimate the charge used (what is counted of the prompt when the engine never said)."""

    __slots__ = ("reached", "used", "prompt")

    def __init__(self, prompt: int = 0) -> None:
        self.reached = False
        self.used: int | None = None
        self.prompt = prompt


class ActiveCalls(set):
    """The calls running now: what the drain deadline ends and the stall sweep looks at."""

    def end_all(self) -> None:
        """The drain deadline: end every request still running (streams get an SSE error event)."""
        for call in list(self):
            call.drained = True
            call.end()

    async def sweep_stalled(self, timeout: float) -> None:
        """End requests whose client has accepted no byte for `timeout` seconds.

        One sweep for all calls rather than a timer around every send: a send costs a clock read.
        """
        period = min(1.0, timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for call in self:
                if call.sending and now - call.sending > timeout and not call.stalled:
                    LOG.warning(
                        "client stopped reading its response; request ended",
                        extra={"tenant": call.tenant, "model": call.model, "request_id": call.request_id.decode()},
                    )
                    call.stall()
