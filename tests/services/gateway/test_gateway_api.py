"""The gateway through the official openai client: auth, isolation, streaming, routing, errors."""

from __future__ import annotations

import collections
import json
import time

import httpx
import openai
import pytest

from tests.services.gateway.conftest import KEYS, digest, eventually


def client(gw, key):
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def test_chat_plain_and_streaming(gw):
    acme = client(gw, KEYS["acme"])
    raw = acme.chat.completions.with_raw_response.create(
        model="llama", messages=[{"role": "user", "content": "hello"}], max_tokens=4
    )
    assert raw.headers["x-upstream"] in ("stable", "canary") and raw.headers["x-request-id"]
    assert raw.parse().usage.completion_tokens == 4
    chunks = list(
        acme.chat.completions.create(
            model="llama", messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split().__len__() == 5
    # The gateway asked the engine for usage; the client did not, so it never sees that chunk.
    assert all(c.usage is None for c in chunks)
    asked = list(
        acme.chat.completions.create(
            model="llama",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=2,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert asked[-1].usage.completion_tokens == 2


def test_text_completions_and_x_api_key(gw):
    response = httpx.post(
        f"{gw.url}/v1/completions",
        headers={"X-API-Key": KEYS["globex"]},
        json={"model": "qwen", "prompt": "once", "max_tokens": 3},
    )
    assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] == 3


def test_tokens_counted_from_usage_including_streams(gw):
    def tokens():
        text = httpx.get(f"{gw.metrics_url}/metrics").text
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith('gateway_tokens_total{kind="completion",model="qwen",tenant="globex"}')
        )

    before = tokens()
    globex = client(gw, KEYS["globex"])
    globex.chat.completions.create(model="qwen", messages=[{"role": "user", "content": "a"}], max_tokens=3)
    list(
        globex.chat.completions.create(
            model="qwen", messages=[{"role": "user", "content": "a"}], max_tokens=4, stream=True
        )
    )
    assert tokens() - before == 7


def test_missing_and_unknown_keys_are_401(gw):
    assert httpx.get(f"{gw.url}/v1/models").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        client(gw, "sk-nobody").models.list()


def test_every_cross_tenant_attempt_is_refused(gw):
    acme, globex = client(gw, KEYS["acme"]), client(gw, KEYS["globex"])
    assert [m.id for m in acme.models.list()] == ["llama"]
    assert [m.id for m in globex.models.list()] == ["qwen"]
    for caller, foreign in ((acme, "qwen"), (globex, "llama")):
        with pytest.raises(openai.PermissionDeniedError) as denied:
            caller.chat.completions.create(model=foreign, messages=[{"role": "user", "content": "x"}])
        message = json.dumps(denied.value.body)
        other = {"qwen": "llama", "llama": "qwen"}[foreign]
        assert other not in message, "the error revealed the caller's other models"
        # A model that exists nowhere gets the very same answer: nothing to probe.
        with pytest.raises(openai.PermissionDeniedError):
            caller.chat.completions.create(model="does-not-exist", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.PermissionDeniedError):
            caller.completions.create(model=foreign, prompt="x")


def test_rotated_keys_both_work(gw):
    for key in (KEYS["acme"], KEYS["acme2"]):
        assert client(gw, key).models.list().data[0].id == "llama"


def test_canary_split_and_sticky_request_ids(gw):
    # One client for all: httpx.post() builds a client (and its TLS context) per call, about 60 ms
    # here. The split is per request, so one keep-alive connection sees it all the same.
    seen = collections.Counter()
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {KEYS['acme']}"}) as client:
        for _ in range(300):
            response = client.post("/v1/chat/completions", json={"model": "llama", "messages": [], "max_tokens": 1})
            seen[response.headers["x-upstream"]] += 1
        assert 0.12 <= seen["canary"] / 300 <= 0.28, seen
        sticky = {
            client.post(
                "/v1/chat/completions",
                headers={"x-request-id": "req-42"},
                json={"model": "llama", "messages": [], "max_tokens": 1},
            ).headers["x-upstream"]
            for _ in range(10)
        }
    assert len(sticky) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{nope", 400),
        (b"[]", 400),
        (json.dumps({"messages": []}).encode(), 400),
        (json.dumps({"model": "llama"}).encode(), 400),
        (json.dumps({"model": "llama", "messages": [], "max_tokens": -1}).encode(), 400),
        (json.dumps({"model": "llama", "messages": [], "stream": "yes"}).encode(), 400),
        (json.dumps({"model": "llama", "messages": [], "stream": True, "stream_options": [1]}).encode(), 400),
        (b'{"model": "llama", "messages": [], "pad": "' + b"x" * 1_100_000 + b'"}', 413),
    ],
)
def test_bad_input(gw, body, status):
    response = httpx.post(
        f"{gw.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {KEYS['acme']}", "Content-Type": "application/json"},
        content=body,
    )
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_key_file_reload_without_restart(gw, config_file):
    document = json.loads(config_file.read_text())
    new_key = "sk-acme-rotated-0004"
    document["tenants"]["acme"]["keyHashes"] = [digest(new_key)]
    config_file.write_text(json.dumps(document))
    try:
        eventually(
            lambda: httpx.get(f"{gw.url}/v1/models", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200,
            "the rotated key was never accepted",
        )
        assert httpx.get(f"{gw.url}/v1/models", headers={"Authorization": f"Bearer {KEYS['acme']}"}).status_code == 401
    finally:
        document["tenants"]["acme"]["keyHashes"] = [digest(KEYS["acme"]), digest(KEYS["acme2"])]
        config_file.write_text(json.dumps(document))
        eventually(
            lambda: (
                httpx.get(f"{gw.url}/v1/models", headers={"Authorization": f"Bearer {KEYS['acme']}"}).status_code == 200
            ),
            "the original keys were never restored",
        )


def test_logs_never_contain_keys_or_prompts(tmp_path, redis, workers):
    from services.gateway.process import gateway
    from tests.services.gateway.conftest import document

    doc = document(workers, rpm=2)
    doc["tenants"]["globex"]["upstreams"]["main"] = "http://127.0.0.1:9"  # nothing listens: 502 path
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps(doc))
    log = tmp_path / "gateway.log"
    prompt = "TOP-SECRET-PROMPT-TEXT"
    with gateway(config, redis.url, log_path=log, reload_interval_seconds=0.2) as service:
        for key, model in ((KEYS["acme"], "llama"),) * 4 + ((KEYS["globex"], "qwen"),) * 2:
            httpx.post(
                f"{service.url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": model, "messages": [{"role": "user", "content": prompt}]},
            )
        config.write_text("{broken")  # a failed reload is logged too
        time.sleep(0.6)
    text = log.read_text()
    assert "reload failed" in text, "expected the failed reload to be logged"
    for line in text.splitlines():
        json.loads(line)  # every line is JSON
    for secret in (*KEYS.values(), prompt):
        assert secret not in text


def test_request_ids_are_echoed_only_when_they_are_plain_tokens(gw):
    def request_id(given):
        headers = {"Authorization": f"Bearer {KEYS['acme']}", **({"X-Request-Id": given} if given else {})}
        body = {"model": "llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
        return httpx.post(f"{gw.url}/v1/chat/completions", headers=headers, json=body).headers["x-request-id"]

    assert request_id("trace-42.a:b") == "trace-42.a:b"
    for unusable in ("has spaces in it", "x" * 200, None):
        made = request_id(unusable)
        assert made != unusable and len(made) == 32 and int(made, 16) >= 0


def test_unknown_paths_and_methods_get_openai_style_errors(gw):
    missing = httpx.get(f"{gw.url}/v1/embeddings")
    wrong_method = httpx.get(f"{gw.url}/v1/chat/completions")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"


def test_a_client_leaving_mid_stream_stops_the_engine(tmp_path, redis):
    from services.gateway.process import gateway
    from services.mock_worker.process import mock_worker
    from tests.services.gateway.conftest import document

    def total(url, prefix, *labels):
        text = httpx.get(f"{url}/metrics").text
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith(prefix) and all(label in line for label in labels)
        )

    with mock_worker("--model", "llama", "--decode-seconds-per-token", "0.05") as slow:
        config = tmp_path / "gateway.json"
        doc = document((slow, slow))
        doc["tenants"]["acme"]["routes"]["llama"] = {"strategy": "direct", "primary": "stable"}
        config.write_text(json.dumps(doc))
        with gateway(config, redis.url) as service:
            body = {"model": "llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 200, "stream": True}
            with httpx.stream(
                "POST",
                f"{service.url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {KEYS['acme']}"},
                json=body,
            ) as response:
                assert response.status_code == 200
                next(response.iter_bytes())  # the stream has started (10 s of tokens to go); now leave

            def both() -> tuple[float, float] | None:
                counts = (
                    total(slow.url, "vllm:request_success_total", 'finished_reason="abort"'),
                    total(service.metrics_url, "gateway_requests_total", 'code="499"'),
                )
                return counts if all(counts) else None

            aborted, closed = eventually(both, "the upstream request was not aborted, or the 499 not counted")
    assert aborted == 1 and closed == 1


def test_every_tenant_has_queue_and_inflight_gauges_at_rest(gw):
    text = httpx.get(f"{gw.metrics_url}/metrics").text
    for tenant in ("acme", "globex"):
        assert f'gateway_tenant_queue_depth{{tenant="{tenant}"}} 0.0' in text
        assert f'gateway_tenant_inflight{{tenant="{tenant}"}} 0.0' in text
