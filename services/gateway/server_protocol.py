"""uvicorn's httptools protocol with the bounds it lacks: request head size and header count, and time.

uvicorn with httptools limits neither the size of a request head nor its number of headers (and
httptools joins a header that arrives in pieces by repeated concatenation, so one huge header costs
quadratic CPU), and it never closes a connection that is slow to send its request: its keep-alive
timeout only runs between requests. Here a head over `max_header_bytes` or with more than
`max_headers` headers is answered 431 and the connection closed before the parser sees the
excess, and a request whose head and body have not all arrived `request_timeout` seconds after its
first byte (or after the connection opened) has its connection closed. Open connections are capped
by uvicorn's own `limit_concurrency` (503 above it).
"""

from __future__ import annotations

import asyncio

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# A list in each request's scope: callables the application adds are called if the client's
# connection is lost before the response is complete. The portable way to learn that, a task
# waiting on receive() for http.disconnect, costs a task per request.
DISCONNECT_HOOKS = "gateway.disconnect_hooks"


class _HeadRefused(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    # Set on a subclass by `bounded_protocol`.
    max_header_bytes = 32 * 1024
    max_headers = 100
    request_timeout = 10.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_bytes = 0
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
        if self._reading_head and self._head_bytes + len(data) > self.max_header_bytes:
            # Feed only what the head may still use; if the head ends within it, the rest follows.
            allowed = self.max_header_bytes - self._head_bytes
            if not self._feed(data[:allowed]):
                return
            if self._reading_head:
                self._refuse()
                return
            data = data[allowed:]
        elif self._reading_head:
            self._head_bytes += len(data)
        self._feed(data)

    def _feed(self, data: bytes) -> bool:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadRefused):
                self._refuse()
                return False
            self._invalid()
            return False
        except httptools.HttpParserError:
            self._invalid()
            return False
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        return True

    def _invalid(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def _refuse(self) -> None:
        message = (f"request head over {self.max_header_bytes} bytes or {self.max_headers} headers").encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(message), message)
        )
        self.transport.close()
        self.parser = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[DISCONNECT_HOOKS] = []
        # The head's byte count runs from the end of the previous request (or the connection's start):
        # resetting it here would leave the read that carried this first byte uncounted.
        self._header_count = 0
        self._arm()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
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
        self._head_bytes = 0
        super().on_message_complete()


def bounded_protocol(max_header_bytes: int, max_headers: int, request_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn.Config(http=...), with these bounds."""
    return type(
        "GatewayHttpProtocol",
        (BoundedHttpToolsProtocol,),
        {"max_header_bytes": max_header_bytes, "max_headers": max_headers, "request_timeout": request_timeout},
    )
