"""Shared limits across replicas, Redis loss, upstream loss, graceful drain, fuzzed input."""

from __future__ import annotations

import concurrent.futures
import json
import math
import signal
import threading
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway.process import gateway, redis_server
from services.gateway.request_fields import CHAT_COMPLETIONS, COMPLETIONS
from services.mock_worker.process import mock_worker
from tests.services.gateway.conftest import KEYS, document, tenant

AUTH = {"Authorization": f"Bearer {KEYS['acme']}"}
BODY = {"model": "llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}


def write(tmp_path, doc, name="gateway.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_limit_shared_by_three_gateways_admits_no_more_than_the_limit(tmp_path, redis, workers):
    limit = 120
    doc = document(workers, rpm=limit, maxConcurrency=64, maxQueue=256)
    # A fresh tenant name: no counts left over from other tests in this minute.
    doc["tenants"]["shared-limit"] = doc["tenants"].pop("acme")
    config = write(tmp_path, doc)
    # A generous Redis timeout: on a loaded machine a 0.25 s miss would rightly fall back to per-process limits.
    slow_ok = {"redis_timeout_seconds": 3}
    with (
        gateway(config, redis.url, **slow_ok) as g1,
        gateway(config, redis.url, **slow_ok) as g2,
        gateway(config, redis.url, **slow_ok) as g3,
    ):
        urls = [g1.url, g2.url, g3.url]

        def send(i):
            return httpx.post(f"{urls[i % 3]}/v1/chat/completions", headers=AUTH, json=BODY, timeout=30).status_code

        # The sliding window weighs the previous minute by how much of it still overlaps, so a burst
        # that crosses a minute boundary is rightly allowed a few more requests: keep the burst in one minute.
        left_in_minute = 60 - time.time() % 60
        if left_in_minute < 20:
            time.sleep(left_in_minute + 0.1)
        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            codes = list(pool.map(send, range(3 * limit)))
        ended = time.time()
    admitted = codes.count(200)
    assert codes.count(429) + admitted == 3 * limit
    # On a machine slow enough for the burst to run into the next minute, the window rightly admits
    # the part of the limit that the previous minute no longer weighs on: at most this many more.
    crossed = int(ended // 60) > int(started // 60)
    more = math.ceil(limit * (ended % 60) / 60) + 1 if crossed else 0
    assert admitted <= limit + more and admitted >= limit - max(1, limit // 100), (
        f"admitted {admitted} for a limit of {limit} (+{more} allowed past the minute)"
    )


def test_429_carries_retry_after_and_ratelimit_headers(tmp_path, redis, workers):
    doc = document(workers, rpm=1)
    doc["tenants"]["headers-test"] = doc["tenants"].pop("acme")
    with gateway(write(tmp_path, doc), redis.url) as service:
        assert httpx.post(f"{service.url}/v1/chat/completions", headers=AUTH, json=BODY).status_code == 200
        refused = httpx.post(f"{service.url}/v1/chat/completions", headers=AUTH, json=BODY)
        metrics = httpx.get(f"{service.metrics_url}/metrics").text
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert (
        refused.headers["x-ratelimit-limit-requests"] == "1"
        and refused.headers["x-ratelimit-remaining-requests"] == "0"
    )
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 'gateway_rate_limited_total{reason="requests",tenant="headers-test"} 1.0' in metrics


def test_redis_killed_mid_test_keeps_serving_and_says_so(tmp_path, workers):
    with redis_server() as own_redis:
        with gateway(write(tmp_path, document(workers)), own_redis.url) as service:
            assert httpx.post(f"{service.url}/v1/chat/completions", headers=AUTH, json=BODY).status_code == 200
            assert "gateway_ratelimit_backend_up 1.0" in httpx.get(f"{service.metrics_url}/metrics").text
            own_redis.process.kill()
            own_redis.process.wait()
            codes = [
                httpx.post(f"{service.url}/v1/chat/completions", headers=AUTH, json=BODY).status_code for _ in range(20)
            ]
            assert codes == [200] * 20
            assert "gateway_ratelimit_backend_up 0.0" in httpx.get(f"{service.metrics_url}/metrics").text


def test_fail_closed_refuses_without_redis(tmp_path, workers):
    with redis_server() as own_redis:
        with gateway(write(tmp_path, document(workers)), own_redis.url, fail_closed="true") as service:
            own_redis.process.kill()
            own_redis.process.wait()
            response = httpx.post(f"{service.url}/v1/chat/completions", headers=AUTH, json=BODY)
            assert response.status_code == 503 and response.headers["retry-after"] == "1"


def test_upstream_killed_mid_stream(tmp_path, redis):
    with mock_worker("--model", "llama", "--decode-seconds-per-token", "0.05") as slow:
        doc = {"tenants": {"acme": document((slow, slow))["tenants"]["acme"]}}
        doc["tenants"]["acme"]["routes"]["llama"] = {"strategy": "direct", "primary": "stable"}
        with gateway(write(tmp_path, doc), redis.url) as service:
            received = []
            with httpx.stream(
                "POST",
                f"{service.url}/v1/chat/completions",
                headers=AUTH,
                json={**BODY, "max_tokens": 200, "stream": True},
                timeout=30,
            ) as response:
                assert response.status_code == 200
                for chunk in response.iter_bytes():
                    received.append(chunk)
                    if len(received) == 3:
                        slow.process.kill()
            body = b"".join(received)
            assert b"[DONE]" not in body
            last_event = body.rstrip().split(b"\n\n")[-1]
            assert last_event.startswith(b"data: ")
            assert json.loads(last_event[6:])["error"]["code"] == "upstream_error"
            assert httpx.get(f"{service.url}/healthz").status_code == 200
            after = httpx.post(f"{service.url}/v1/chat/completions", headers=AUTH, json=BODY)
            assert after.status_code == 502 and after.json()["error"]["code"] == "upstream_error"


def test_fallback_to_the_other_upstream_before_the_first_byte(tmp_path, redis, workers):
    doc = document(workers)
    doc["tenants"]["acme"]["upstreams"]["stable"] = "http://127.0.0.1:9"  # refused
    doc["tenants"]["acme"]["routes"]["llama"]["percent"] = 0  # always the primary first
    with gateway(write(tmp_path, doc), redis.url) as service:
        response = httpx.post(f"{service.url}/v1/chat/completions", headers=AUTH, json=BODY)
    assert response.status_code == 200 and response.headers["x-upstream"] == "canary"


def test_upstream_timeout_is_504(tmp_path, redis):
    with mock_worker("--model", "llama", "--prefill-seconds", "3") as slow:
        doc = {"tenants": {"acme": document((slow, slow))["tenants"]["acme"]}}
        doc["tenants"]["acme"]["routes"]["llama"] = {"strategy": "direct", "primary": "stable"}
        with gateway(write(tmp_path, doc), redis.url, upstream_timeout_seconds=0.5) as service:
            response = httpx.post(f"{service.url}/v1/chat/completions", headers=AUTH, json=BODY, timeout=10)
    assert response.status_code == 504


def admitted(url: str, tenant: str) -> float:
    """Requests of `tenant` the gateway holds now: in flight upstream plus queued for a slot."""
    return sum(
        float(line.split()[-1])
        for line in httpx.get(f"{url}/metrics").text.splitlines()
        if line.startswith(("gateway_tenant_inflight{", "gateway_tenant_queue_depth{")) and f'tenant="{tenant}"' in line
    )


def test_sigterm_under_load_drops_no_request(tmp_path, redis):
    with mock_worker("--model", "llama", "--slots", "64", "--decode-seconds-per-token", "0.06") as worker:
        with gateway(write(tmp_path, document((worker, worker))), redis.url) as service:
            results: list[int] = []

            def send():
                try:
                    results.append(
                        httpx.post(
                            f"{service.url}/v1/chat/completions",
                            headers=AUTH,
                            json={**BODY, "max_tokens": 50},
                            timeout=30,
                        ).status_code
                    )
                except httpx.HTTPError as exc:
                    results.append(repr(exc))

            threads = [threading.Thread(target=send) for _ in range(20)]
            for thread in threads:
                thread.start()
            # SIGTERM once all 20 are inside the gateway (16 holding upstream slots, 4 queued; each takes
            # ~3 s upstream, so a slow machine still gets all 20 in): a request still connecting then would rightly be refused.
            deadline = time.monotonic() + 10
            while admitted(service.metrics_url, "acme") < 20:
                assert time.monotonic() < deadline, "the 20 requests never all reached the gateway"
                time.sleep(0.02)
            service.process.send_signal(signal.SIGTERM)
            for thread in threads:
                thread.join()
            service.process.wait(timeout=30)
    assert results == [200] * 20, results


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
BODIES = st.one_of(
    st.binary(max_size=200),
    JSONISH.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"model": st.sampled_from(["llama", "qwen", "", "x"]) | st.integers(), "messages": JSONISH},
        # Every field either endpoint of the API defines, each with any JSON (ints of any size included).
        optional={
            name: JSONISH | st.integers() for name in sorted({*CHAT_COMPLETIONS.fields, *COMPLETIONS.fields, "prompt"})
        },
    ).map(lambda v: json.dumps(v).encode()),
)
# Leading or trailing blanks are refused by the client library itself, before the gateway sees them.
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    body=BODIES,
    auth=st.one_of(st.just(f"Bearer {KEYS['acme']}"), HEADER_TEXT),
    path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]),
    extra=HEADER_TEXT,
)
def test_fuzzed_bodies_and_headers_never_5xx(gw, body, auth, path, extra):
    response = httpx.post(
        f"{gw.url}{path}",
        content=body,
        headers={"Authorization": auth, "X-Request-Id": extra, "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code < 500, (response.status_code, response.text[:200])
    if response.status_code >= 400:
        assert set(response.json()["error"]) >= {"message", "type", "param", "code"}, response.text[:200]


# What the charge reads, with the bounds OpenAI gives them, written out here rather than taken from the gateway.
CHARGED = {"max_tokens": 2**31 - 1, "max_completion_tokens": 2**31 - 1, "n": 128, "best_of": 20}
TOKEN_VALUE = (
    st.integers(-3, 200)
    | st.integers()
    | st.floats(
        allow_nan=False, allow_infinity=False
    )  # JSON has no infinity: see test_token_counts_beyond_a_double_are_a_400
    | st.booleans()
    | st.none()
    | st.text(max_size=3)
    | st.lists(st.integers(0, 3), max_size=2)
    | st.dictionaries(st.text(max_size=2), st.integers(), max_size=1)
)
TEXT_PROMPT = st.one_of(
    st.text(max_size=20),
    st.lists(st.text(max_size=5), min_size=1, max_size=8),
    st.lists(st.integers(0, 50_000), min_size=1, max_size=40),
    st.lists(st.lists(st.integers(0, 100), max_size=6), min_size=1, max_size=6),
)


def first_wrong(fields: dict) -> str | None:
    """The field the gateway must name: the first out of bounds in the body's order, else best_of below n."""
    for name, value in fields.items():
        good = type(value) is int and 1 <= value <= CHARGED[name]
        if value is not None and not good:
            return name
    if fields.get("best_of") is not None and fields["best_of"] < (fields.get("n") or 1):
        return "best_of"
    return None


@pytest.fixture(scope="module")
def no_tokens_gw(tmp_path_factory, redis, workers):
    """A tenant with tpm 0: every request is over it, unless a field makes its charge 0 or less."""
    url = workers[0].url
    doc = {"tenants": {"acme": tenant([KEYS["acme"]], ["llama"], {"u": url},
                                      {"llama": {"strategy": "direct", "primary": "u"}}, tpm=0)}}  # fmt: skip
    path = tmp_path_factory.mktemp("gw-tpm0") / "gateway.json"
    path.write_text(json.dumps(doc))
    with gateway(path, redis.url) as service:
        yield service


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    fields=st.fixed_dictionaries({}, optional=dict.fromkeys(CHARGED, TOKEN_VALUE)),
    path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]),
    prompt=TEXT_PROMPT,
    order=st.permutations(list(CHARGED)),
    extension=st.booleans(),
)
def test_every_field_the_charge_reads_is_checked_on_both_endpoints(
    no_tokens_gw, fields, path, prompt, order, extension
):
    fields = {name: fields[name] for name in order if name in fields}
    base = {"messages": [{"role": "user", "content": "x"}]} if path == "/v1/chat/completions" else {"prompt": prompt}
    if extension and "messages" in base:
        base["prompt"] = [[1], 5, "x"]  # not a chat field: passed through, and never read by the charge
    response = httpx.post(
        f"{no_tokens_gw.url}{path}", headers=AUTH, json={"model": "llama", **base, **fields}, timeout=10
    )
    # Nothing reaches an engine: either a field is wrong, or the charge (at least 1) is over the tpm of 0.
    assert response.status_code == 400, (response.status_code, response.text[:200])
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    wrong = first_wrong(fields)
    if wrong is None:
        assert error["code"] == "tokens_exceed_limit", error
    else:
        assert error["param"] == wrong and error["code"] is None, (fields, error)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize("literal", [b"1e309", b"-1e309", b"Infinity", b"NaN"])
def test_token_counts_beyond_a_double_are_a_400(no_tokens_gw, path, literal):
    # Written as raw bytes: no JSON encoder writes these, but a client can send them.
    prompt = b'"messages": [{"role": "user", "content": "x"}]' if path == "/v1/chat/completions" else b'"prompt": "x"'
    body = b'{"model": "llama", %s, "max_tokens": %s}' % (prompt, literal)
    response = httpx.post(
        f"{no_tokens_gw.url}{path}", headers={**AUTH, "content-type": "application/json"}, content=body, timeout=10
    )
    assert response.status_code == 400, response.text[:200]
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
