"""A loopback HTTP server whose GET answers come from a function: stand-ins for Prometheus and exporters."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

# (path, query string parameters) -> (status, content type, body)
Answer = Callable[[str, dict[str, list[str]]], tuple[int, str, bytes]]


@contextlib.contextmanager
def serve(answer: Answer) -> Iterator[tuple[str, list[str]]]:
    """Yields the base URL and the list of `query` parameters seen (Prometheus' API takes `query`)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            url = urlparse(self.path)
            params = parse_qs(url.query)
            seen.extend(params.get("query", []))
            status, content_type, body = answer(url.path, params)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def prometheus_api(answer: Callable[[str], tuple[int, dict]]) -> Answer:
    """Adapts `query -> (status, JSON payload)` to the stub."""

    def handle(_path: str, params: dict[str, list[str]]) -> tuple[int, str, bytes]:
        status, payload = answer(params.get("query", [""])[0])
        return status, "application/json", json.dumps(payload).encode()

    return handle
