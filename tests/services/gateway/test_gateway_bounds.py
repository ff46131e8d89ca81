"""Bounded resources: one bad client or upstream must not slow everyone. Real gateways and upstreams."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from services.gateway.process import gateway
from services.mock_worker.process import ROOT, mock_worker
from tests.services.gateway.conftest import KEYS, digest, eventually
from tests.services.gateway.scripted_upstream import ScriptedUpstream, close_delimited, completion, send_json
from tests.services.gateway.test_gateway_limits import AUTH, CHAT, one_tenant, post

BODY = {"model": "llama", "messages": [], "max_tokens": 1}


def conversation(url: str, parts: list[bytes], pause: float = 0.3, wait: float = 5.0) -> bytes:
    """Send each part in its own write, `pause` apart (so each is its own read); what comes back until close."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        try:
            for i, part in enumerate(parts):
                if i:
                    time.sleep(pause)
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused: its answer is read below
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            chunks.append(b"<still open>")
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def raw_exchange(url: str, data: bytes, wait: float = 5.0) -> bytes:
    """Send `data` on a fresh connection; what comes back until the server closes it (or `wait` passes)."""
    return conversation(url, [data], wait=wait)


def request_head(extra: bytes = b"") -> bytes:
    return b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + extra + b"\r\n"


def test_request_heads_over_the_size_or_count_limit_get_431(gw):
    huge = raw_exchange(gw.url, request_head(b"x-big: " + b"a" * (200 * 1024) + b"\r\n"))
    many = raw_exchange(gw.url, request_head(b"".join(b"x-h%d: 1\r\n" % i for i in range(150))))
    fine = raw_exchange(gw.url, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert huge.startswith(b"HTTP/1.1 431") and many.startswith(b"HTTP/1.1 431")
    assert fine.startswith(b"HTTP/1.1 200")


def test_slow_and_silent_connections_are_closed(tmp_path, redis, workers):
    with gateway(one_tenant(tmp_path, workers[0].url), redis.url, request_timeout_seconds=1) as gw:
        started = time.monotonic()
        silent = raw_exchange(gw.url, b"", wait=8)
        trickled = raw_exchange(gw.url, b"GET /healthz HTTP/1.1\r\nhost: x\r\n", wait=8)
        elapsed = time.monotonic() - started
        assert httpx.get(f"{gw.url}/healthz").status_code == 200
    assert silent == b"" and trickled == b""  # closed by the gateway, not still open
    assert elapsed < 8


USAGE_EVENT = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}'
EVENTS = [
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"}}],"usage":null}\r\n\r\n',
    b'data:{"id":"c","choices":[{"index":0,"delta":{"content":"b"}}],"usage":null}\r\r',
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"c"}}],"usage":null}\n',
    b"\n" + USAGE_EVENT + b"\r",
    b"\n\r\ndata: [DONE]\n\n",
]


def test_sse_events_split_on_every_line_ending_and_usage_is_found_and_hidden(tmp_path, redis):
    with ScriptedUpstream(close_delimited(EVENTS)) as upstream:
        with gateway(one_tenant(tmp_path, upstream.url, "sse"), redis.url) as gw:
            body = {**BODY, "stream": True}
            with httpx.stream("POST", f"{gw.url}{CHAT}", headers=AUTH, json=body) as response:
                received = response.read()
            metrics = httpx.get(f"{gw.metrics_url}/metrics").text
    assert upstream.bodies[0]["stream_options"] == {"include_usage": True}
    # Byte for byte what the engine sent, less the usage event and the usage fields the client never asked for.
    expected = b"".join(EVENTS).replace(b',"usage":null', b"").replace(USAGE_EVENT + b"\r\n\r\n", b"")
    assert received == expected
    assert 'gateway_tokens_total{kind="completion",model="llama",tenant="sse"} 2.0' in metrics


def test_an_sse_event_over_the_limit_ends_the_stream_with_an_error_event(tmp_path, redis):
    endless = [b"data: " + b"x" * 65536 for _ in range(40)]  # 2.5 MiB and never a blank line
    with ScriptedUpstream(close_delimited(endless)) as upstream:
        with gateway(one_tenant(tmp_path, upstream.url), redis.url, max_event_bytes=1024 * 1024) as gw:
            with httpx.stream("POST", f"{gw.url}{CHAT}", headers=AUTH, json={**BODY, "stream": True}) as response:
                received = response.read()
    last = json.loads(received.rstrip().split(b"\n\n")[-1][6:])
    assert last["error"]["code"] == "upstream_error" and "over 1048576 bytes" in last["error"]["message"]


def test_a_non_streamed_response_over_the_size_limit_is_a_502(tmp_path, redis):
    def respond(upstream, handler, body):
        send_json(handler, {**completion(), "pad": "x" * (2 * 1024 * 1024)})

    with ScriptedUpstream(respond) as upstream:
        with gateway(one_tenant(tmp_path, upstream.url), redis.url, max_response_bytes=1024 * 1024) as gw:
            response = post(gw.url, BODY)
    assert response.status_code == 502 and "larger than 1048576 bytes" in response.json()["error"]["message"]


def test_the_upstream_timeout_is_a_total_deadline_not_reset_by_a_trickle(tmp_path, redis):
    def trickle(upstream, handler, body):
        data = json.dumps(completion()).encode()
        handler.send_response(200)
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        for byte in data:  # one byte every 50 ms: about 8 s in all
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.05)

    with ScriptedUpstream(trickle) as upstream:
        with gateway(one_tenant(tmp_path, upstream.url), redis.url, upstream_timeout_seconds=1) as gw:
            started = time.monotonic()
            response = post(gw.url, BODY)
            elapsed = time.monotonic() - started
    assert response.status_code == 504 and elapsed < 4


def test_a_client_that_leaves_aborts_its_non_streamed_upstream_request(tmp_path, redis):
    with ScriptedUpstream(lambda up, handler, body: up.wait_or_abort(handler, 20)) as upstream:
        with gateway(one_tenant(tmp_path, upstream.url), redis.url) as gw:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{gw.url}{CHAT}", headers=AUTH, json=BODY, timeout=1)
            eventually(lambda: upstream.aborted, "the upstream request was never aborted")
            assert upstream.aborted == 1  # while the gateway still runs: its stop would close it too


def test_a_waiter_that_left_while_queued_never_reaches_an_engine(tmp_path, redis):
    with ScriptedUpstream(
        lambda up, handler, body: up.wait_or_abort(handler, 2) or send_json(handler, completion())
    ) as (upstream):
        config = one_tenant(tmp_path, upstream.url, "left-queue", maxConcurrency=1, maxQueue=4)
        with gateway(config, redis.url) as gw:
            first = threading.Thread(target=post, args=(gw.url, BODY))
            first.start()
            while upstream.inflight == 0:
                time.sleep(0.02)
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{gw.url}{CHAT}", headers=AUTH, json=BODY, timeout=0.5)
            first.join()
            time.sleep(0.5)
            assert post(gw.url, BODY).status_code == 200
    assert upstream.requests == 2  # the first and the last; the one that left never got there


def test_the_config_watcher_survives_a_directory_and_a_missing_file(tmp_path, redis, workers):
    config = one_tenant(tmp_path, workers[0].url)
    good = config.read_text()
    with gateway(config, redis.url, reload_interval_seconds=0.1) as gw:
        config.unlink()
        time.sleep(0.4)
        config.mkdir()
        time.sleep(0.4)
        config.rmdir()
        document = json.loads(good)
        document["tenants"]["acme"]["keyHashes"] = [digest("sk-after-the-storm")]
        config.write_text(json.dumps(document))
        headers = {"Authorization": "Bearer sk-after-the-storm"}
        eventually(lambda: httpx.get(f"{gw.url}/v1/models", headers=headers).status_code == 200, "the watcher stopped")
        assert httpx.get(f"{gw.url}/readyz").status_code == 200
        metrics = httpx.get(f"{gw.metrics_url}/metrics").text
    assert "gateway_config_watcher_up 1.0" in metrics
    assert 'gateway_config_reloads_total{result="error"} 1.0' in metrics  # the directory


def test_streams_past_the_drain_deadline_end_with_an_sse_error_event(tmp_path, redis):
    with mock_worker("--model", "llama", "--decode-seconds-per-token", "0.05") as slow:
        with gateway(one_tenant(tmp_path, slow.url), redis.url, drain_seconds=1) as gw:
            body = {**BODY, "messages": [{"role": "user", "content": "x"}], "max_tokens": 400, "stream": True}
            with httpx.stream("POST", f"{gw.url}{CHAT}", headers=AUTH, json=body, timeout=30) as response:
                chunks = response.iter_bytes()
                received = [next(chunks)]
                gw.process.send_signal(signal.SIGTERM)
                received += list(chunks)
            gw.process.wait(timeout=15)
    last = json.loads(b"".join(received).rstrip().split(b"\n\n")[-1][6:])
    assert last["error"]["code"] == "server_shutting_down"


def start_failure(tmp_path, text: str) -> str:
    """The gateway's log when started on a file that is no document at all (it must refuse to start)."""
    path = tmp_path / "bad.json"
    path.write_text(text)
    env = {**os.environ, "GATEWAY_CONFIG_FILE": str(path), "GATEWAY_PORT": "0", "GATEWAY_METRICS_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "services.gateway"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2, done.stderr
    return done.stderr


def entry(key, url):
    return {"keyHashes": [digest(key)], "models": ["llama"], "upstreams": {"u": url},
            "routes": {"llama": {"strategy": "direct", "primary": "u"}}}  # fmt: skip


def status(gw, key) -> int:
    return httpx.get(f"{gw.url}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code


def test_a_bad_tenant_entry_is_refused_and_the_others_are_served(tmp_path, redis, workers):
    url = workers[0].url
    document = {
        "tenants": {
            "good": entry("sk-good", url),
            "bad-port": entry("sk-bad-port", "http://127.0.0.1:99999"),
            "bad-type": {**entry("sk-bad-type", url), "limits": {"rpm": "many"}},
            "copycat": entry("sk-good", url),  # the same key as `good`
        }
    }
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps(document))
    log_path = tmp_path / "gateway.log"
    with gateway(config, redis.url, log_path=log_path, reload_interval_seconds=0.1) as gw:
        assert status(gw, "sk-good") == 200
        assert status(gw, "sk-bad-port") == 401 and status(gw, "sk-bad-type") == 401
        models = httpx.get(f"{gw.url}/v1/models", headers={"Authorization": "Bearer sk-good"}).json()
        assert [m["id"] for m in models["data"]] == ["llama"]
        # A reload where one tenant's entry turns bad: it keeps its previous entry, the others' changes apply.
        document["tenants"]["good"]["limits"] = {"rpm": -5}
        document["tenants"]["newcomer"] = entry("sk-newcomer", url)
        config.write_text(json.dumps(document))
        eventually(lambda: status(gw, "sk-newcomer") == 200, "one tenant's bad entry stopped the reload for everyone")
        assert status(gw, "sk-good") == 200
        metrics = httpx.get(f"{gw.metrics_url}/metrics").text
    assert 'gateway_config_reloads_total{result="partial"} 1.0' in metrics
    log = log_path.read_text()
    assert "tenants.bad-port.upstreams.u" in log and "tenants.bad-type.limits.rpm" in log
    assert "also a key of tenant" in log and "tenants.good.limits.rpm" in log


def test_a_file_that_is_no_document_refuses_to_start(tmp_path):
    assert "not JSON" in start_failure(tmp_path, "{not json")
    assert "tenants" in start_failure(tmp_path, json.dumps({"tenant": {}}))
    # Deeper than the parser's stack: a document error too, not a traceback and exit 1.
    assert "not JSON" in start_failure(tmp_path, "[" * 100_000 + "]" * 100_000)


def test_a_document_too_deep_to_parse_on_reload_keeps_the_previous_one(tmp_path, redis, workers):
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({"tenants": {"good": entry("sk-good", workers[0].url)}}))
    log_path = tmp_path / "gateway.log"
    with gateway(config, redis.url, log_path=log_path, reload_interval_seconds=0.1) as gw:
        config.write_text('{"tenants": ' + "[" * 100_000 + "]" * 100_000 + "}")
        eventually(
            lambda: 'gateway_config_reloads_total{result="error"} 1.0' in httpx.get(f"{gw.metrics_url}/metrics").text,
            "the reload was never counted",
        )
        assert status(gw, "sk-good") == 200
    assert "tenant config reload failed" in log_path.read_text()  # the document's error, not a surprise


def models_of(gw, key) -> list[str]:
    response = httpx.get(f"{gw.url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    return [m["id"] for m in response.json()["data"]] if response.status_code == 200 else []


def test_a_reload_cannot_move_a_key_to_another_tenant(tmp_path, redis, workers):
    url = workers[0].url
    document = {"tenants": {"q2": {**entry("sk-q2", url), "models": ["llama", "q2-only"]}, "q3": entry("sk-q3", url)}}
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps(document))
    log_path = tmp_path / "gateway.log"
    with gateway(config, redis.url, log_path=log_path, reload_interval_seconds=0.1) as gw:
        assert models_of(gw, "sk-q3") == ["llama"]
        # q2, written first, now also lists q3's key; q3 still does. And two tenants claim a new key.
        document["tenants"]["q2"]["keyHashes"].append(digest("sk-q3"))
        document["tenants"]["q3"]["models"] = ["llama", "q3-new"]
        document["tenants"]["x1"] = entry("sk-both", url)
        document["tenants"]["x2"] = entry("sk-both", url)
        document["tenants"]["newcomer"] = entry("sk-newcomer", url)
        config.write_text(json.dumps(document))
        eventually(lambda: status(gw, "sk-newcomer") == 200, "the reload never happened")
        q3, q2, both = models_of(gw, "sk-q3"), models_of(gw, "sk-q2"), status(gw, "sk-both")
    assert q3 == ["llama", "q3-new"]  # q3 keeps its key, and its own changes apply
    assert q2 == ["llama", "q2-only"]  # q2 keeps its previous entry
    assert both == 401  # held by nobody before: neither new tenant gets it
    log = log_path.read_text()
    assert "tenants.q2.keyHashes" in log and "also a key of tenant 'q3'" in log
    assert "tenants.x1.keyHashes" in log and "tenants.x2.keyHashes" in log


def test_two_authorization_headers_are_a_400(gw):
    both = [("authorization", f"Bearer {KEYS['globex']}"), ("authorization", f"Bearer {KEYS['acme']}")]
    response = httpx.post(f"{gw.url}{CHAT}", headers=both, json=BODY)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_api_key"


def test_two_different_keys_in_authorization_and_x_api_key_are_a_400(gw):
    headers = {"Authorization": f"Bearer {KEYS['acme']}", "X-API-Key": KEYS["globex"]}
    for response in (
        httpx.post(f"{gw.url}{CHAT}", headers=headers, json=BODY),
        httpx.get(f"{gw.url}/v1/models", headers=headers),
    ):
        assert response.status_code == 400, response.text
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert response.json()["error"]["code"] == "invalid_api_key"
    same = {"Authorization": f"Bearer {KEYS['globex']}", "X-API-Key": KEYS["globex"]}
    assert [m["id"] for m in httpx.get(f"{gw.url}/v1/models", headers=same).json()["data"]] == ["qwen"]


def test_get_one_model_as_openai_does(gw):
    import openai

    acme = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEYS["acme"], max_retries=0)
    assert acme.models.retrieve("llama").id == "llama"
    for unknown in ("qwen", "nowhere"):  # another tenant's and nobody's: the same 404
        with pytest.raises(openai.NotFoundError):
            acme.models.retrieve(unknown)
