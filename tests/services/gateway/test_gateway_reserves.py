"""A busy tenant is admitted from a slice of its limits reserved ahead: fewer round trips to Redis,
and the limits, the cap and the minute's counts still exact. Real gateways, Redis and upstreams."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import redis as redis_py

from services.gateway.limit_grants import GRANT_MIN_RATE, GRANT_SECONDS, POOL_IDLE_SECONDS, SWEEP_SECONDS
from services.gateway.process import gateway
from tests.services.gateway.scripted_upstream import USAGE, ScriptedUpstream, completion, send_json, slow_json
from tests.services.gateway.test_gateway_limits import AUTH, CHAT, counts, in_fresh_minute, one_tenant

BODY = {"model": "llama", "messages": [], "max_tokens": 10}
LAPSE = GRANT_SECONDS + POOL_IDLE_SECONDS + 2 * SWEEP_SECONDS + 0.5


def script_calls(client: redis_py.Redis) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


def answer(upstream, handler, body) -> None:
    send_json(handler, completion())


def test_a_busy_tenant_skips_the_round_trip_and_its_counts_end_exact(tmp_path, redis):
    in_fresh_minute(15)
    client = redis_py.Redis.from_url(redis.url)
    sent = 6 * GRANT_MIN_RATE
    with ScriptedUpstream(answer) as upstream:
        config = one_tenant(tmp_path, upstream.url, "busy", rpm=64_000, tpm=64_000_000, maxConcurrency=64)
        with gateway(config, redis.url) as gw, httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as http:
            before = script_calls(client)
            codes = [http.post(CHAT, json=BODY).status_code for _ in range(sent)]
            calls = script_calls(client) - before
            time.sleep(LAPSE)
            settled = counts(redis.url, "busy")
            slots = client.zcard("rl:{busy}:slots")
    assert codes == [200] * sent
    # Without slices every request is one admission script, plus count corrections.
    assert calls < sent / 2, f"{calls} script calls for {sent} requests"
    # The unused slice went back: the minute holds exactly what the engine reported, request by request.
    assert settled == (sent, sent * USAGE["total_tokens"])
    assert slots == 0  # the kept leases were given back once idle


def test_replicas_admitting_from_slices_never_exceed_the_rpm_together(tmp_path, redis):
    in_fresh_minute(15)
    rpm = 20 * GRANT_MIN_RATE
    with ScriptedUpstream(answer) as upstream:
        config = one_tenant(tmp_path, upstream.url, "sliced-rpm", rpm=rpm, tpm=None, maxConcurrency=64)
        with (
            gateway(config, redis.url) as g1,
            gateway(config, redis.url) as g2,
            gateway(config, redis.url) as g3,
            concurrent.futures.ThreadPoolExecutor(12) as pool,
        ):
            urls = [g1.url, g2.url, g3.url]
            clients = [httpx.Client(base_url=u, headers=AUTH, timeout=30) for u in urls]
            try:
                codes = list(pool.map(lambda i: clients[i % 3].post(CHAT, json=BODY).status_code, range(rpm + 300)))
            finally:
                for c in clients:
                    c.close()
    admitted = codes.count(200)
    assert set(codes) <= {200, 429}
    assert admitted <= rpm and upstream.requests == admitted
    # Slices held unused by one replica can refuse a little early elsewhere: at most one slice each.
    assert admitted >= rpm - 3 * (rpm // 64), admitted


def test_kept_leases_never_let_the_cap_be_exceeded_across_replicas(tmp_path, redis):
    cap = 16
    with ScriptedUpstream(slow_json(0.01)) as upstream:
        config = one_tenant(tmp_path, upstream.url, "sliced-cap", maxConcurrency=cap, maxQueue=1000)
        with (
            gateway(config, redis.url, redis_timeout_seconds=3) as g1,
            gateway(config, redis.url, redis_timeout_seconds=3) as g2,
            gateway(config, redis.url, redis_timeout_seconds=3) as g3,
            concurrent.futures.ThreadPoolExecutor(3 * cap) as pool,
        ):
            client = redis_py.Redis.from_url(redis.url)
            urls = [g1.url, g2.url, g3.url]
            clients = [httpx.Client(base_url=u, headers=AUTH, timeout=30) for u in urls]
            before = script_calls(client)
            try:
                codes = list(pool.map(lambda i: clients[i % 3].post(CHAT, json=BODY).status_code, range(900)))
            finally:
                for c in clients:
                    c.close()
            calls = script_calls(client) - before
    assert codes == [200] * 900
    assert upstream.peak <= cap, f"{upstream.peak} in flight at the engine for a cap of {cap}"
    assert calls < 900, "no request was admitted from a slice: this test did not exercise them"
