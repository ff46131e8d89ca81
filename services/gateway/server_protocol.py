"""uvicorn's httptools protocol with the bounds it lacks: request head size and header count, and time.

uvicorn with httptools limits neither the size of a request head nor its number of headers (and
httptools joins a header that arrives in pieces by repeated concatenation, so one huge header costs
quadratic CPU), and it never closes a connection that is slow to send its request: its keep-alive
timeout only runs between requests. Here a head over `max_header_bytes` or with more than
`max_headers` headers is answered 431 and the connection closed, with the parser holding at most
one read (uvloop reads up to 250 KB) of it past the limit (below), and a request whose head and body have not all arrived `request_timeout` seconds after its
first byte (or after the connection opened) has its connection closed. Open connections are capped
by uvicorn's own `limit_concurrency`. Every reply made here (431, a malformed request's 400, the
503 above the cap) is in OpenAI's error shape, as the application's are.

The head is bounded two ways, as neither alone holds however the client splits its reads:
- in the parser callbacks, exactly: the URL's pieces and each header's name and value are added up
  (+4 a header for ": " and CRLF) from the head's first byte, wherever in a read that falls;
- per read, on what reaches the parser: while a head is being read, the bytes of each read that
  began inside it are counted, and no more than `max_header_bytes` of them are fed, because
  httptools joins a header that is still arriving in a buffer the callbacks only see once complete.
  A head that begins within a read (after the previous request's body) is counted from the next
  read on: how much of that read is head is unknown, and counting all of it would refuse a
  legitimate pipelined request behind a large body. What the read held of that head is counted
  exactly by the callbacks; a header still incomplete at that read's end is what the parser may
  hold beyond the limit, one read's worth at most.
"""

from __future__ import annotations

import asyncio

import httptools
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from services.gateway.asgi import send_reply
from services.gateway.errors import error

# A list in each request's scope: callables the application adds are called if the client's
# connection is lost before the response is complete. The portable way to learn that, a task
# waiting on receive() for http.disconnect, costs a task per request.
DISCONNECT_HOOKS = "gateway.disconnect_hooks"
# In each request's scope: drops the client's connection at once, unsent bytes included. A request
# ended for a client that stopped reading uses it: a graceful close would wait on that client forever.
ABORT_CONNECTION = "gateway.abort_connection"


class _HeadRefused(Exception):
    pass


# Built once: it is sent when the gateway is already overloaded. Closing the connection is the point
# of the cap; Retry-After tells the client it may come back.
_OVERLOADED = error(
    503,
    "the gateway has too many connections; retry the request",
    code="server_overloaded",
    headers=[(b"retry-after", b"1"), (b"connection", b"close")],
)


async def _overloaded(scope, receive, send) -> None:
    await send_reply(send, _OVERLOADED)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    # Set on a subclass by `bounded_protocol`.
    max_header_bytes = 32 * 1024
    max_headers = 100
    request_timeout = 10.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._read_bytes = 0  # the per-read count (see the module's docstring)
        self._head_bytes = 0  # the callbacks' exact count
        self._header_count = 0
        self._reading_head = True
        self._request_timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
        self._request_timer = self.loop.call_later(self.request_timeout, self._too_slow)

    def _too_slow(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            # The application, if it has started, sees the client disconnect.
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            for hook in cycle.scope.get(DISCONNECT_HOOKS, ()):
                hook()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        limit = self.max_header_bytes
        while self._reading_head and self._read_bytes + len(data) > limit:
            # Feed only what the head may still use; if the head ends within it, the rest follows.
            allowed = limit - self._read_bytes
            # on_message_complete resets this to 0: that tells "the same head is still unfinished"
            # from "a request ended in this piece and the next one began".
            self._read_bytes = limit
            if allowed and not self._feed(data[:allowed]):
                return
            if self._reading_head and self._read_bytes == limit:
                self._refuse()
                return
            data = data[allowed:]
        if self._reading_head:
            self._read_bytes += len(data)
        self._feed(data)

    def _feed(self, data: bytes) -> bool:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadRefused):
                self._refuse()
                return False
            self._invalid(str(exc))
            return False
        except httptools.HttpParserError as exc:
            self._invalid(str(exc))
            return False
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        return True

    def _invalid(self, reason: str) -> None:
        self.logger.warning("Invalid HTTP request received.", extra={"problem": reason})
        self.send_400_response(f"invalid HTTP request: {reason}")

    def send_400_response(self, msg: str) -> None:
        self._reply_and_close(400, msg, "invalid_http_request")

    def _refuse(self) -> None:
        self._reply_and_close(
            431,
            f"request head over {self.max_header_bytes} bytes or {self.max_headers} headers",
            "request_head_too_large",
        )
        self.parser = None

    def _reply_and_close(self, status: int, message: str, code: str) -> None:
        # Written directly: the request never became a cycle, so there is no ASGI send to use.
        reply = error(status, message, code=code)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += (name, b": ", value, b"\r\n")
        head.append(
            b"content-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (reply.content_type, len(reply.body))
        )
        self.transport.write(b"".join(head) + reply.body)
        self.transport.close()

    def _start_asgi_task(self, cycle, app) -> None:
        # uvicorn picks its plain-text 503 app for a request over limit_concurrency (in
        # on_headers_complete, and again for pipelined requests): answer in OpenAI's shape instead.
        if app is service_unavailable:
            app = _overloaded
        super()._start_asgi_task(cycle, app)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[DISCONNECT_HOOKS] = []
        self.scope[ABORT_CONNECTION] = self.transport.abort
        # The per-read count runs from the end of the previous request (or the connection's start):
        # resetting it here would leave the read that carried this first byte uncounted.
        self._head_bytes = 0
        self._header_count = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.max_header_bytes:
            raise _HeadRefused
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_bytes += len(name) + len(value) + 4
        if self._header_count > self.max_headers or self._head_bytes > self.max_header_bytes:
            raise _HeadRefused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None
        self._reading_head = True
        self._read_bytes = 0
        super().on_message_complete()


def bounded_protocol(max_header_bytes: int, max_headers: int, request_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn.Config(http=...), with these bounds."""
    return type(
        "GatewayHttpProtocol",
        (BoundedHttpToolsProtocol,),
        {"max_header_bytes": max_header_bytes, "max_headers": max_headers, "request_timeout": request_timeout},
    )
