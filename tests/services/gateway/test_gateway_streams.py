"""Streams and what they are billed: clients that stop reading or leave, engines that report usage
on every chunk or spell it their own way, upstreams with endless heads. Real gateways and upstreams."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from services.gateway.process import gateway
from tests.services.gateway.conftest import KEYS, eventually, tenant
from tests.services.gateway.scripted_upstream import ScriptedUpstream, close_delimited, completion, send_json
from tests.services.gateway.test_gateway_limits import AUTH, CHAT, counts, in_fresh_minute, one_tenant, post


def metric(url: str, name: str, **labels: str) -> float | None:
    """The value of one series on the metrics port, None when it does not exist."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + "{") and all(label in line for label in wanted):
            return float(line.split()[-1])
    return None


def chunk(content: str | None, usage: str = "null") -> bytes:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    data = json.dumps({"id": "c", "object": "chat.completion.chunk", "choices": choices}, separators=(",", ":"))
    return b"data: " + data[:-1].encode() + b',"usage":' + usage.encode() + b"}\n\n"


def cumulative(completion_tokens: int) -> str:
    usage = {"prompt_tokens": 7, "completion_tokens": completion_tokens, "total_tokens": 7 + completion_tokens}
    return json.dumps(usage, separators=(",", ":"))


# vLLM's continuous_usage_stats: running totals on every chunk, then the usage-only chunk.
EVERY_CHUNK = [chunk("t", cumulative(i + 1)) for i in range(5)] + [chunk(None, cumulative(5)), b"data: [DONE]\n\n"]
# Usage null written with a space, and a spaced usage-only chunk.
SPACED = [chunk("t").replace(b'"usage":null', b'"usage": null') for _ in range(5)] + [
    chunk(None, cumulative(5)).replace(b'"choices":[]', b'"choices": []'),
    b"data: [DONE]\n\n",
]


@pytest.mark.parametrize("events", [EVERY_CHUNK, SPACED], ids=["usage-on-every-chunk", "spaced-usage-null"])
@pytest.mark.parametrize("asked", [False, True], ids=["usage-not-asked", "usage-asked"])
def test_streamed_usage_is_counted_once_and_hidden_from_a_client_that_did_not_ask(tmp_path, redis, events, asked):
    name = f"usage-{'asked' if asked else 'hidden'}-{'each' if events is EVERY_CHUNK else 'spaced'}"
    with ScriptedUpstream(close_delimited(events)) as upstream:
        with gateway(one_tenant(tmp_path, upstream.url, name), redis.url) as gw:
            body = {"model": "llama", "messages": [], "max_tokens": 5, "stream": True}
            if asked:
                body["stream_options"] = {"include_usage": True}
            with httpx.stream("POST", f"{gw.url}{CHAT}", headers=AUTH, json=body) as response:
                received = response.read()
            tokens = {
                kind: metric(gw.metrics_url, "gateway_tokens_total", tenant=name, kind=kind)
                for kind in ("prompt", "completion")
            }
    # The last report, once: not 5 running totals added up.
    assert tokens == {"prompt": 7.0, "completion": 5.0}
    if asked:
        assert received == b"".join(events)
    else:
        assert b"usage" not in received
        relayed = [json.loads(event[6:]) for event in received.split(b"\n\n") if event.startswith(b"data: {")]
        assert [c["choices"][0]["delta"]["content"] for c in relayed] == ["t"] * 5
        assert received.endswith(b"data: [DONE]\n\n")


def leave_after_three(upstream, handler, body) -> None:
    """Three content chunks, then the usage only if the gateway is still there after 20 s."""
    handler.send_response(200)
    handler.send_header("content-type", "text/event-stream")
    handler.send_header("connection", "close")
    handler.end_headers()
    for _ in range(3):
        handler.wfile.write(chunk("t"))
    handler.wfile.flush()
    if not upstream.wait_or_abort(handler, 20):
        handler.wfile.write(chunk(None, cumulative(3)) + b"data: [DONE]\n\n")
    handler.close_connection = True


@pytest.mark.parametrize("ending", ["client-left", "upstream-cut"])
def test_a_stream_that_ends_without_usage_is_billed_its_estimate(tmp_path, redis, ending):
    name = f"no-usage-{ending}"
    respond = leave_after_three if ending == "client-left" else close_delimited([chunk("t")] * 3)
    raw = json.dumps({"model": "llama", "messages": [{"role": "user", "content": "x" * 400}], "stream": True})
    prompt_estimate = len(raw) // 4
    in_fresh_minute()
    with ScriptedUpstream(respond) as upstream:
        with gateway(one_tenant(tmp_path, upstream.url, name, maxTokens=50), redis.url) as gw:
            with httpx.stream("POST", f"{gw.url}{CHAT}", headers=AUTH, content=raw, timeout=30) as response:
                received = b""
                for piece in response.iter_bytes():
                    received += piece
                    if received.count(b"\n\n") == 3:
                        break  # leaves before the usage chunk (the upstream-cut stream ends here anyway)
            eventually(
                lambda: metric(gw.metrics_url, "gateway_tokens_total", tenant=name, kind="completion") is not None,
                "the stream was never billed",
            )
            tokens = {
                kind: metric(gw.metrics_url, "gateway_tokens_total", tenant=name, kind=kind)
                for kind in ("prompt", "completion")
            }
            if ending == "client-left":
                assert upstream.aborted == 1
    assert tokens == {"prompt": float(prompt_estimate), "completion": 3.0}
    # Redis keeps the whole charge (prompt estimate plus the output cap): the engine never said.
    assert counts(redis.url, name)[1] == prompt_estimate + 50


def flood(upstream, handler, body) -> None:
    """Stream fast until the gateway lets go (or 30 s pass): what a client that stops reading meets."""
    if not body.get("stream"):
        send_json(handler, completion())
        return
    handler.send_response(200)
    handler.send_header("content-type", "text/event-stream")
    handler.send_header("connection", "close")
    handler.end_headers()
    event = chunk("t" * 1000)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            handler.wfile.write(event * 16)
            handler.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        with upstream.lock:
            upstream.aborted += 1
    handler.close_connection = True


def stalled_client(url: str, body: dict) -> socket.socket:
    """A client that sends its request and never reads a byte of the answer."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    data = json.dumps(body).encode()
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (AUTH["Authorization"].encode(), len(data), data)
    )
    return sock


# A non-streamed body is one send, which the server buffers whole without waiting: only a stream's
# sends wait for the client.
def test_a_client_that_stops_reading_a_stream_gives_back_its_slots(tmp_path, redis):
    name = "stalled-stream"
    body = {"model": "llama", "messages": [], "max_tokens": 5, "stream": True}
    with ScriptedUpstream(flood) as upstream:
        config = one_tenant(tmp_path, upstream.url, name)
        # One upstream slot for all tenants: a stalled client that kept it would stop everyone.
        settings = {"upstream_timeout_seconds": 2, "max_upstream_concurrency": 1}
        with gateway(config, redis.url, **settings) as gw:
            sock = stalled_client(gw.url, body)
            try:
                started = time.monotonic()
                while metric(gw.metrics_url, "gateway_tenant_inflight", tenant=name) != 1:
                    assert time.monotonic() - started < 5, "the request never got its slot"
                    time.sleep(0.05)
                while metric(gw.metrics_url, "gateway_tenant_inflight", tenant=name) != 0:
                    assert time.monotonic() - started < 10, "the stalled client still holds its slot"
                    time.sleep(0.1)
                ended = metric(gw.metrics_url, "gateway_requests_total", tenant=name, code="499")
                # The only upstream slot is free again: the next request is served.
                after = post(gw.url, {**body, "stream": False})
                while upstream.aborted == 0 and time.monotonic() - started < 15:
                    time.sleep(0.05)
                aborted = upstream.aborted  # while the client still holds its connection open
                # The gateway dropped its side of the connection too (a graceful close would wait on
                # the client's unread bytes for as long as the client likes, one connection each).
                port = int(gw.url.rsplit(":", 1)[1])
                while established_from(port) and time.monotonic() - started < 15:
                    time.sleep(0.1)
                kept_open = established_from(port)
            finally:
                sock.close()
    assert ended == 1.0
    assert after.status_code == 200
    assert aborted == 1  # the engine's connection was closed, so it stops generating
    assert kept_open == 0


def established_from(port: int) -> int:
    """Established TCP connections whose local end is `port` on this machine (/proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _, state = line.split()[1:4]
        if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


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
            eventually(lambda: upstream.aborted, "the upstream connection was never closed")
    assert response.status_code == 502 and elapsed < 5
    problem = response.json()["error"]
    assert problem["code"] == "upstream_error" and "head over" in problem["message"]
    assert upstream.aborted == 1  # the gateway stopped reading and closed, not buffered 200 MB


def test_the_engine_sees_request_ids_scoped_by_tenant(tmp_path, redis):
    # Two tenants on one engine send the same x-request-id: the engine (which keys its work by it)
    # must see two ids, while each client gets its own id back.
    seen = []

    def respond(upstream, handler, body) -> None:
        with upstream.lock:
            seen.append(handler.headers["x-request-id"])
        send_json(handler, completion())

    with ScriptedUpstream(respond) as upstream:
        document = {
            "tenants": {
                name: tenant(
                    [KEYS[key]], ["llama"], {"w": upstream.url}, {"llama": {"strategy": "direct", "primary": "w"}}
                )
                for name, key in (("acme", "acme"), ("globex", "globex"))
            }
        }
        path = tmp_path / "gateway.json"
        path.write_text(json.dumps(document))
        with gateway(path, redis.url) as gw:
            echoed = [
                httpx.post(
                    f"{gw.url}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {KEYS[key]}", "x-request-id": "job-7"},
                    json={"model": "llama", "messages": [], "max_tokens": 1},
                ).headers["x-request-id"]
                for key in ("acme", "globex")
            ]
    assert echoed == ["job-7", "job-7"]
    assert seen == ["acme-job-7", "globex-job-7"]
