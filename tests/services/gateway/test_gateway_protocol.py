"""The client connection (`server_protocol.py`): the head's bound however reads are split, OpenAI-shaped
replies for what never reaches the application, and a 413 that ends the connection. Real processes."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from services.gateway.process import gateway
from tests.services.gateway.conftest import KEYS, eventually
from tests.services.gateway.test_gateway_bounds import conversation, raw_exchange
from tests.services.gateway.test_gateway_limits import one_tenant

LIMIT = 32 * 1024  # GATEWAY_MAX_HEADER_BYTES' default, which the session's gateway runs with
HEALTH = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"


def responses(data: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """(status, headers, body) of each content-length framed response in `data`."""
    found = []
    while data.startswith(b"HTTP/1.1 "):
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
        length = int(headers[b"content-length"])
        found.append((int(lines[0].split(b" ")[1]), headers, data[:length]))
        data = data[length:]
    return found


def assert_openai_error(status: int, headers: dict[bytes, bytes], body: bytes) -> dict:
    assert headers[b"content-type"] == b"application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def chat(body_bytes: int, extra: bytes = b"") -> bytes:
    """A valid chat completion request whose body is `body_bytes` long (padded with an engine extension)."""
    body = b'{"model":"llama","messages":[{"role":"user","content":"x"}],"max_tokens":1,"pad":"'
    body += b"x" * (body_bytes - len(body) - 2) + b'"}'
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer %s\r\n" % KEYS["acme"].encode()
    return head + extra + b"content-length: %d\r\n\r\n" % len(body) + body


def test_a_head_that_begins_within_the_previous_requests_read_is_bounded_all_the_same(gw):
    # The first read: a whole request and 30 KB of the next head; the second: 31 KB more of it.
    second = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 30_000
    pipelined = conversation(gw.url, [HEALTH + second, b"a" * 31_000 + b"\r\n\r\n"])
    # The same, the head's rest in 1 KB reads.
    split = conversation(gw.url, [HEALTH + second] + [b"a" * 1000] * 31 + [b"\r\n\r\n"], pause=0.02)
    # Many small headers rather than one large one, all in the read that ends the first request.
    many = (
        HEALTH
        + b"GET /healthz HTTP/1.1\r\nhost: x\r\n"
        + b"".join(b"x-h%d: %s\r\n" % (i, b"a" * 700) for i in range(60))
    )
    at_once = conversation(gw.url, [many + b"\r\n"])
    # The URL rather than a header.
    url = conversation(gw.url, [HEALTH + b"GET /healthz?" + b"a" * 30_000, b"a" * 31_000 + b" HTTP/1.1\r\n\r\n"])
    for exchange in (pipelined, split, at_once, url):
        replies = responses(exchange)
        assert [status for status, _, _ in replies][-1] == 431, exchange[:300]
        assert [status for status, _, _ in replies].count(200) <= 1  # only the first request's
        error = assert_openai_error(*replies[-1])
        assert error["code"] == "request_head_too_large" and replies[-1][1][b"connection"] == b"close"


def test_pipelined_requests_with_small_heads_pass_whatever_their_bodies(gw):
    # A fresh connection's first read holds a whole request, 50 bytes short of the head's limit, and
    # the next one, whose head straddles that limit; then bodies up to the body limit, and a head
    # just under its limit.
    big_head = b"x-pad: " + b"p" * (LIMIT - 1200) + b"\r\n"
    first = chat(LIMIT - 50 - (len(chat(10_000)) - 10_000))
    assert len(first) == LIMIT - 50
    sequence = [
        first + chat(2000),
        chat(1024 * 1024) + HEALTH + chat(600 * 1024) + chat(5000, big_head),
        chat(100) + b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ]
    replies = responses(conversation(gw.url, sequence, wait=15))
    assert [status for status, _, _ in replies] == [200] * 8, [body[:200] for _, _, body in replies]


@pytest.mark.parametrize(
    "framing",
    [
        b"transfer-encoding: chunked\r\ncontent-length: 5\r\n",
        b"content-length: 5\r\ncontent-length: 6\r\n",
        b"content-length: -5\r\n",
        b"x-folded: a\r\n b\r\ncontent-length: 5\r\n",
    ],
    ids=["te-and-cl", "two-cl", "negative-cl", "obs-fold"],
)
def test_malformed_framing_is_a_400_in_openais_shape(gw, framing):
    exchange = raw_exchange(gw.url, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" + framing + b"\r\nhello")
    [(status, headers, body)] = responses(exchange)
    assert status == 400 and headers[b"connection"] == b"close"
    assert assert_openai_error(status, headers, body)["code"] == "invalid_http_request"


def test_a_head_over_the_limit_is_a_431_in_openais_shape(gw):
    [(status, headers, body)] = responses(raw_exchange(gw.url, HEALTH[:-2] + b"x-big: " + b"a" * 40_000 + b"\r\n\r\n"))
    assert status == 431 and assert_openai_error(status, headers, body)["type"] == "invalid_request_error"


def test_connections_over_the_cap_get_an_openai_shaped_503_with_retry_after(tmp_path, redis, workers):
    with gateway(one_tenant(tmp_path, workers[0].url), redis.url, max_connections=4) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port))) for _ in range(4)]
        try:
            time.sleep(0.3)
            [(status, headers, body)] = responses(raw_exchange(gw.url, HEALTH))
        finally:
            for sock in held:
                sock.close()
        # Once the held connections close, their places come back.
        eventually(lambda: httpx.get(f"{gw.url}/healthz").status_code == 200, "the connection cap never freed up")
    assert status == 503 and headers[b"retry-after"] == b"1" and headers[b"connection"] == b"close"
    assert assert_openai_error(status, headers, body)["code"] == "server_overloaded"


def test_a_413_closes_the_connection_while_the_chunked_body_keeps_coming(gw):
    host, port = gw.url.removeprefix("http://").split(":")
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer %s\r\n" % KEYS["acme"].encode()
    chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
    sent, stopped = [0], threading.Event()

    with socket.create_connection((host, int(port)), timeout=2) as sock:

        def keep_sending():
            started = time.monotonic()
            try:
                sock.sendall(head + b"transfer-encoding: chunked\r\n\r\n")
                while time.monotonic() - started < 6:  # less than the 10 s request timeout
                    sock.sendall(chunk)
                    sent[0] += len(chunk)
            except TimeoutError:
                pass  # not read any more, but not closed either
            except OSError:
                stopped.set()  # the gateway closed the connection

        sender = threading.Thread(target=keep_sending)
        sender.start()
        received = b""
        try:
            while (data := sock.recv(65536)) and not received.endswith(b"}}"):
                received += data
        except (TimeoutError, ConnectionResetError):
            pass
        sender.join()
    [(status, headers, body)] = responses(received)
    assert status == 413 and headers[b"connection"] == b"close"
    assert_openai_error(status, headers, body)
    assert stopped.is_set() and sent[0] < 16 * 1024 * 1024
