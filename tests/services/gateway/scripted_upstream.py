"""A loopback upstream whose answers a test scripts, counting what the gateway sent it.

The mock worker behaves like an engine; the cases here need one that misbehaves on purpose
(trickles, oversized answers, odd SSE framing) or counts exactly (requests in flight at once,
requests whose client went away).
"""

from __future__ import annotations

import http.server
import json
import select
import socket
import threading
import time
from collections.abc import Callable

USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


class ScriptedUpstream:
    def __init__(self, respond: Callable[[ScriptedUpstream, http.server.BaseHTTPRequestHandler, dict], None]):
        self.respond = respond
        self.lock = threading.Lock()
        self.requests = self.inflight = self.peak = self.aborted = 0
        self.bodies: list[dict] = []

    def __enter__(self) -> ScriptedUpstream:
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The head and the body are two writes: without this, Nagle's algorithm holds the body
            # until the gateway's delayed ACK (about 40 ms a response).
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])) or b"{}")
                with upstream.lock:
                    upstream.requests += 1
                    upstream.inflight += 1
                    upstream.peak = max(upstream.peak, upstream.inflight)
                    upstream.bodies.append(body)
                try:
                    upstream.respond(upstream, self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with upstream.lock:
                        upstream.inflight -= 1

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_or_abort(self, handler, seconds: float) -> bool:
        """Sleep `seconds` unless the gateway closes the connection first (then count it and say True)."""
        readable, _, _ = select.select([handler.connection], [], [], seconds)
        if readable and handler.connection.recv(1, socket.MSG_PEEK) == b"":
            with self.lock:
                self.aborted += 1
            return True
        return False


def send_json(handler, payload: dict, status: int = 200) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def completion(usage: dict | None = None) -> dict:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": usage or USAGE,
    }


def slow_json(seconds: float):
    """Answer after `seconds`, unless the gateway gives up on the request first."""

    def respond(upstream: ScriptedUpstream, handler, body: dict) -> None:
        if not upstream.wait_or_abort(handler, seconds):
            send_json(handler, completion())

    return respond


def close_delimited(pieces: list[bytes], pause: float = 0.0, content_type: str = "text/event-stream"):
    """Send `pieces` one by one (a body ended by closing the connection), `pause` seconds apart."""

    def respond(upstream: ScriptedUpstream, handler, body: dict) -> None:
        handler.send_response(200)
        handler.send_header("content-type", content_type)
        handler.send_header("connection", "close")
        handler.end_headers()
        for piece in pieces:
            handler.wfile.write(piece)
            handler.wfile.flush()
            time.sleep(pause)
        handler.close_connection = True

    return respond
