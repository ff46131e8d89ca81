"""Limits no tenant can game and charges that match the engine: real gateways, Redis and upstreams."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import time

import httpx
import pytest
import redis as redis_py

from services.gateway.process import gateway
from services.mock_worker.process import ROOT
from tests.services.gateway.conftest import KEYS, digest, tenant
from tests.services.gateway.scripted_upstream import USAGE, ScriptedUpstream, completion, send_json, slow_json

AUTH = {"Authorization": f"Bearer {KEYS['acme']}"}
CHAT = "/v1/chat/completions"


def one_tenant(tmp_path, url: str, name: str = "acme", **limits) -> object:
    doc = {
        "tenants": {
            name: tenant(
                [KEYS["acme"]], ["llama"], {"u": url}, {"llama": {"strategy": "direct", "primary": "u"}}, **limits
            )
        }
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def counts(redis_url: str, name: str) -> tuple[int, int]:
    """(requests, tokens) counted for tenant `name` in this minute's bucket."""
    bucket = int(time.time() * 1000) // 60_000
    client = redis_py.Redis.from_url(redis_url)
    values = client.mget(f"rl:{{{name}}}:r:{bucket}", f"rl:{{{name}}}:t:{bucket}")
    return tuple(int(v or 0) for v in values)


def in_fresh_minute(seconds_needed: float = 15) -> None:
    """Counts are read from this minute's bucket: start where the minute has room left."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        time.sleep(left + 0.1)


def post(url: str, body: dict, headers=AUTH, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}{CHAT}", headers=headers, json=body, timeout=30, **kwargs)


@contextlib.contextmanager
def replicas(config, redis_url: str, threads: int, count: int = 3, **settings):
    """`count` gateways on one tenants document and one Redis, and a thread pool to load them: their urls."""
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(gateway(config, redis_url, **settings)).url for _ in range(count)]
        pool = stack.enter_context(concurrent.futures.ThreadPoolExecutor(threads))
        yield urls, pool


@pytest.fixture
def answering():
    def respond(upstream, handler, body):
        send_json(handler, completion())

    with ScriptedUpstream(respond) as upstream:
        yield upstream


@pytest.mark.parametrize(
    ("fields", "wrong"),
    [
        # The hole: with max_completion_tokens null, max_tokens went unchecked and was charged.
        ({"max_completion_tokens": None, "max_tokens": -100_000_000}, "max_tokens"),
        ({"max_tokens": 5, "max_completion_tokens": -100_000_000}, "max_completion_tokens"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"max_tokens": 10**30}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"n": "2"}, "n"),
        ({"n": True}, "n"),
        ({"temperature": "hot"}, "temperature"),
        ({"stop": [1, 2]}, "stop"),
        ({"logit_bias": {"1": "x"}}, "logit_bias"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options"),
    ],
)
def test_every_token_field_is_checked_whatever_the_others_hold(gw, redis, fields, wrong):
    in_fresh_minute(5)
    before = counts(redis.url, "acme")
    response = post(gw.url, {"model": "llama", "messages": [{"role": "user", "content": "x"}], **fields})
    assert response.status_code == 400, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.json()["error"]["param"] == wrong
    assert counts(redis.url, "acme") == before  # nothing charged, nothing refunded


TEXT = "/v1/completions"
PROMPTS = {CHAT: {"messages": [{"role": "user", "content": "x"}]}, TEXT: {"prompt": "x"}}


@pytest.mark.parametrize("path", [CHAT, TEXT])
@pytest.mark.parametrize(
    ("fields", "wrong"),
    [
        # Each endpoint's charge reads all four token fields, so each endpoint checks all four.
        ({"best_of": "x"}, "best_of"),
        ({"best_of": [1]}, "best_of"),
        ({"best_of": 2.5, "max_tokens": 3}, "best_of"),
        ({"best_of": True}, "best_of"),
        ({"best_of": 3, "n": 4}, "best_of"),
        ({"max_completion_tokens": "abc"}, "max_completion_tokens"),
        ({"max_completion_tokens": [5]}, "max_completion_tokens"),
        ({"max_completion_tokens": {}}, "max_completion_tokens"),
        ({"max_completion_tokens": 0.5}, "max_completion_tokens"),
        ({"max_completion_tokens": -1_000_000}, "max_completion_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": 7, "max_completion_tokens": 2**70}, "max_completion_tokens"),
    ],
)
def test_every_token_field_is_checked_on_both_endpoints(gw, redis, path, fields, wrong):
    in_fresh_minute(5)
    before = counts(redis.url, "acme")
    scripts = script_errors(gw)
    response = httpx.post(f"{gw.url}{path}", headers=AUTH, json={"model": "llama", **PROMPTS[path], **fields})
    assert response.status_code == 400, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.json()["error"]["param"] == wrong
    assert counts(redis.url, "acme") == before
    assert script_errors(gw) == scripts  # refused before the limit script ever saw it


def script_errors(gw) -> float:
    text = httpx.get(f"{gw.metrics_url}/metrics").text
    return next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("gateway_ratelimit_script_errors_total")
    )


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "no-redis"])
def test_no_field_makes_a_charge_below_one(tmp_path, redis, answering, shared):
    # tpm 0: every request is over it unless its charge is 0 or less.
    with gateway(one_tenant(tmp_path, answering.url, "zero", tpm=0), redis.url if shared else None) as gw:
        body = {"model": "llama", "prompt": "x", "max_completion_tokens": -1}
        body["max_completion_tokens"] = -(len(json.dumps(body)) // 4)  # cancels the prompt's estimate
        tricked = httpx.post(f"{gw.url}{TEXT}", headers=AUTH, json=body)
        honest = httpx.post(f"{gw.url}{TEXT}", headers=AUTH, json={**body, "max_completion_tokens": 1})
    assert tricked.status_code == 400 and tricked.json()["error"]["param"] == "max_completion_tokens"
    assert honest.status_code == 400 and honest.json()["error"]["code"] == "tokens_exceed_limit"
    assert answering.requests == 0


@pytest.mark.parametrize(
    ("prompt", "max_tokens"),
    [
        (["a"] * 50, 100),  # 50 prompts of up to 100 tokens each: 5,000 tokens, not 100
        ([[1] * 10] * 60, 10),  # 60 token-id prompts: 600 ids and 600 output tokens
        ([1] * 1200, 1),  # 1,200 ids in 2 bytes each: a quarter of its bytes would say 600
    ],
    ids=["strings", "token-id-lists", "token-ids"],
)
def test_a_list_of_prompts_is_charged_for_every_prompt(tmp_path, redis, answering, prompt, max_tokens):
    with gateway(one_tenant(tmp_path, answering.url, "prompts", tpm=1000), redis.url) as gw:
        body = {"model": "llama", "prompt": prompt, "max_tokens": max_tokens}
        refused = httpx.post(f"{gw.url}{TEXT}", headers=AUTH, json=body)
        fits = httpx.post(f"{gw.url}{TEXT}", headers=AUTH, json={**body, "prompt": prompt[:5]})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "tokens_exceed_limit", refused.text
    assert fits.status_code == 200, fits.text
    assert answering.requests == 1


def nested(depth: int):
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def two_pods(tmp_path, pods: list[str], name: str) -> object:
    """A tenant whose worker has two pods: the picker ranks them (and writes the prompt for its index)."""
    path = one_tenant(tmp_path, "http://llama.pods.svc:8000", name)
    doc = json.loads(path.read_text())
    doc["endpoints"] = {"http://llama.pods.svc:8000": pods}
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def two_answering(answering):
    def respond(upstream, handler, body):
        send_json(handler, completion())

    with ScriptedUpstream(respond) as other:
        yield answering, other


@pytest.mark.parametrize(
    "fields",
    [
        {},  # no max_tokens: the gateway writes the body again to add it
        {"max_tokens": 2, "stream": True},  # writes it again to ask for usage
        {"max_tokens": 2},  # sent as it came, but the picker writes the content for its prefix index
    ],
    ids=["max-tokens-added", "include-usage-added", "picker"],
)
def test_a_body_nested_deeper_than_the_gateway_writes_is_a_400(tmp_path, redis, two_answering, fields):
    in_fresh_minute(5)
    name = "-".join(["deep", *fields])  # counted apart from the other cases' requests
    with gateway(two_pods(tmp_path, [u.url for u in two_answering], name), redis.url) as gw:
        # 3 levels (the body, messages, a message) and the content's: 255 in all, one more than orjson writes.
        body = {"model": "llama", "messages": [{"role": "user", "content": nested(252)}], **fields}
        refused = post(gw.url, body)
        charged = counts(redis.url, name)
        body["messages"][0]["content"] = nested(251)
        served = post(gw.url, body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "messages" and "nested too deeply" in refused.text
    assert charged == (0, 0)
    assert served.status_code == 200, served.text


FAULTY_PICKER = """
import services.gateway.prefix_index as index

real = index.prompt_text


def prompt_text(body):
    if "explode" in body:
        raise RuntimeError("a bug in the picker")
    return real(body)


index.prompt_text = prompt_text
"""


def test_a_500_from_a_bug_is_counted_and_in_openai_shape(tmp_path, redis, two_answering, monkeypatch):
    # A bug planted where the red team found one (the picker's prompt text), before the gateway imports it.
    (tmp_path / "sitecustomize.py").write_text(FAULTY_PICKER)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{ROOT}")
    with gateway(two_pods(tmp_path, [u.url for u in two_answering], "buggy"), redis.url) as gw:
        failed = post(gw.url, {"model": "llama", "messages": [], "max_tokens": 1, "explode": True})
        served = post(gw.url, {"model": "llama", "messages": [], "max_tokens": 1})
        metrics = httpx.get(f"{gw.metrics_url}/metrics").text
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "internal_error", failed.text
    assert served.status_code == 200
    assert any(
        line.startswith("gateway_requests_total{") and 'code="500"' in line and line.endswith(" 1.0")
        for line in metrics.splitlines()
    ), metrics


def test_a_charge_is_never_negative_and_n_multiplies_it(tmp_path, redis, answering):
    in_fresh_minute()
    with gateway(one_tenant(tmp_path, answering.url, "charges", tpm=10_000), redis.url) as gw:
        base = {"model": "llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3000}
        assert post(gw.url, base).status_code == 200
        # 4 choices of 3000 can never fit 10,000 tokens a minute: a 400 that clients do not retry.
        refused = post(gw.url, {**base, "n": 4})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "tokens_exceed_limit"
        # best_of is a completions field; 4 x 3000 never fits either.
        text = httpx.post(
            f"{gw.url}/v1/completions", headers=AUTH, json={"model": "llama", "prompt": "x", "max_tokens": 3000,
                                                              "best_of": 4},
        )  # fmt: skip
        assert text.status_code == 400 and text.json()["error"]["code"] == "tokens_exceed_limit"
    requests, tokens = counts(redis.url, "charges")
    # Reconciled with the engine's usage: what it reported, not the 3000 estimated.
    assert (requests, tokens) == (1, USAGE["prompt_tokens"] + USAGE["completion_tokens"])


def test_a_limit_script_error_refuses_that_request_only(tmp_path, redis, answering):
    in_fresh_minute()
    doc = json.loads(one_tenant(tmp_path, answering.url, "broken").read_text())
    doc["tenants"]["healthy"] = {**doc["tenants"]["broken"], "keyHashes": [digest(KEYS["globex"])]}
    path = tmp_path / "two.json"
    path.write_text(json.dumps(doc))
    bucket = int(time.time() * 1000) // 60_000
    # A counter of the wrong type makes the script fail for this tenant (WRONGTYPE), as a bug would.
    redis_py.Redis.from_url(redis.url).lpush(f"rl:{{broken}}:r:{bucket}", "x")
    with gateway(path, redis.url, fail_closed="true") as gw:
        body = {"model": "llama", "messages": [], "max_tokens": 1}
        failed = post(gw.url, body)
        assert failed.status_code == 500 and failed.json()["error"]["code"] == "ratelimit_error"
        assert post(gw.url, body, headers={"Authorization": f"Bearer {KEYS['globex']}"}).status_code == 200
        assert httpx.get(f"{gw.url}/readyz").status_code == 200
        metrics = httpx.get(f"{gw.metrics_url}/metrics").text
    assert "gateway_ratelimit_backend_up 1.0" in metrics
    assert "gateway_ratelimit_script_errors_total 1.0" in metrics


def test_metrics_are_served_on_their_own_port_only(gw):
    assert httpx.get(f"{gw.url}/metrics").status_code == 404
    assert "gateway_requests_total" in httpx.get(f"{gw.metrics_url}/metrics").text
    assert httpx.get(f"{gw.metrics_url}/v1/models", headers=AUTH).status_code == 404


def test_without_max_tokens_the_configured_cap_is_charged_and_sent_upstream(tmp_path, redis, answering):
    in_fresh_minute()
    config = one_tenant(tmp_path, answering.url, "capped", maxTokens=700, maxTokensByModel={"llama": 40})
    with gateway(config, redis.url) as gw:
        assert post(gw.url, {"model": "llama", "messages": [], "stream": False}).status_code == 200
    assert answering.bodies[-1]["max_tokens"] == 40


def test_streamed_usage_is_reconciled_and_hidden_from_a_client_that_did_not_ask(tmp_path, redis, workers):
    in_fresh_minute()
    with gateway(one_tenant(tmp_path, workers[0].url, "streamed", tpm=100_000), redis.url) as gw:
        body = {"model": "llama", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 6, "stream": True}
        with httpx.stream("POST", f"{gw.url}{CHAT}", headers=AUTH, json=body) as response:
            raw = response.read()
        asked = post(gw.url, {**body, "stream": False}).json()["usage"]
    # Exactly what the client would have had without the gateway's include_usage: no usage at all.
    assert b'"usage"' not in raw and raw.endswith(b"data: [DONE]\n\n")
    # Both requests charged what the engine reported (the streamed one the same as the plain one).
    assert counts(redis.url, "streamed") == (2, 2 * asked["total_tokens"])


def test_a_request_refused_for_a_full_queue_is_never_charged(tmp_path, redis):
    in_fresh_minute()
    with ScriptedUpstream(slow_json(2.0)) as upstream:
        config = one_tenant(tmp_path, upstream.url, "queue-charge", maxConcurrency=1, maxQueue=0, tpm=100_000)
        with gateway(config, redis.url) as gw, concurrent.futures.ThreadPoolExecutor(1) as pool:
            body = {"model": "llama", "messages": [], "max_tokens": 10}
            first = pool.submit(post, gw.url, body)
            while upstream.inflight == 0:
                time.sleep(0.02)
            refused = post(gw.url, body)
            during = counts(redis.url, "queue-charge")
            assert first.result().status_code == 200
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_concurrency"
    assert during[0] == 1  # only the first request was counted


def test_the_concurrency_cap_holds_across_three_gateways(tmp_path, redis):
    cap = 3
    with ScriptedUpstream(slow_json(0.3)) as upstream:
        config = one_tenant(tmp_path, upstream.url, "shared-cap", maxConcurrency=cap, maxQueue=100)
        with replicas(config, redis.url, 24, redis_timeout_seconds=3) as (urls, pool):
            body = {"model": "llama", "messages": [], "max_tokens": 1}
            codes = list(pool.map(lambda i: post(urls[i % 3], body).status_code, range(24)))
    assert codes == [200] * 24
    assert upstream.peak == cap, f"{upstream.peak} in flight at the engine for a cap of {cap}"


def test_the_queue_bound_holds_across_gateways(tmp_path, redis):
    with ScriptedUpstream(slow_json(3.0)) as upstream:
        config = one_tenant(tmp_path, upstream.url, "shared-queue", maxConcurrency=2, maxQueue=2)
        with replicas(config, redis.url, 10, count=2, redis_timeout_seconds=3) as (urls, pool):
            body = {"model": "llama", "messages": [], "max_tokens": 1}
            codes = list(pool.map(lambda i: post(urls[i % 2], body).status_code, range(10)))
    assert sorted(codes) == [200] * 4 + [429] * 6, codes
    assert upstream.peak == 2


def test_slots_of_a_gateway_that_died_come_free_when_their_leases_expire(tmp_path, redis):
    with ScriptedUpstream(slow_json(30)) as upstream:
        config = one_tenant(tmp_path, upstream.url, "dead-replica", maxConcurrency=1, maxQueue=4)
        with gateway(config, redis.url, lease_seconds=1) as doomed, gateway(config, redis.url) as survivor:
            body = {"model": "llama", "messages": [], "max_tokens": 1}
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                pool.submit(lambda: post(doomed.url, body).status_code)
                while upstream.inflight == 0:
                    time.sleep(0.02)
                doomed.process.kill()
                upstream.respond = slow_json(0)
                started = time.monotonic()
                assert post(survivor.url, body).status_code == 200
    # The slot was held until the dead replica's lease ran out (1 s), not for the 30 s request.
    assert time.monotonic() - started < 10
