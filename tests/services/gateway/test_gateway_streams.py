"""Streams and what they are billed: clients that stop reading or leave, engines that report usage
on every chunk or spell it their own way, upstreams with endless heads. Real gateways and upstreams."""

from __future__ import annotations

import time

from services.gateway.process import gateway
from tests.services.gateway.scripted_upstream import ScriptedUpstream
from tests.services.gateway.test_gateway_limits import one_tenant, post


def endless_head(upstream, handler, body) -> None:
    handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
    try:
        for i in range(200_000):
            handler.wfile.write(b"x-h%d: %s\r\n" % (i, b"v" * 1000))
    except (BrokenPipeError, ConnectionResetError):
        with upstream.lock:
            upstream.aborted += 1
    handler.close_connection = True


def test_an_upstream_head_without_end_is_a_502(tmp_path, redis):
    with ScriptedUpstream(endless_head) as upstream:
        with gateway(one_tenant(tmp_path, upstream.url), redis.url) as gw:
            started = time.monotonic()
            response = post(gw.url, {"model": "llama", "messages": [], "max_tokens": 1})
            elapsed = time.monotonic() - started
            deadline = time.monotonic() + 5
            while upstream.aborted == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
    assert response.status_code == 502 and elapsed < 5
    problem = response.json()["error"]
    assert problem["code"] == "upstream_error" and "head over" in problem["message"]
    assert upstream.aborted == 1  # the gateway stopped reading and closed, not buffered 200 MB
