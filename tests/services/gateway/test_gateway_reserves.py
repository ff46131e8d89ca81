"""A busy tenant is admitted from a slice of its limits reserved ahead: fewer round trips to Redis,
and the limits, the cap and the minute's counts still exact. Real gateways, Redis and upstreams."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import redis as redis_py

from services.gateway.limit_grants import (
    GRANT_SECONDS,
    POOL_IDLE_SECONDS,
    RESERVE_FRACTION,
    SWEEP_SECONDS,
)
from services.gateway.process import gateway
from tests.services.gateway.scripted_upstream import USAGE, ScriptedUpstream, completion, send_json
from tests.services.gateway.test_gateway_limits import AUTH, CHAT, counts, in_fresh_minute, one_tenant, replicas

BODY = {"model": "llama", "messages": [], "max_tokens": 10}
# Busy from 10 requests a second: a slow machine running the tests still gets reserves.
BUSY = 10
LAPSE = GRANT_SECONDS + POOL_IDLE_SECONDS + 2 * SWEEP_SECONDS + 0.5


def script_calls(client: redis_py.Redis) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


def answer(upstream, handler, body) -> None:
    send_json(handler, completion())


def load(urls: list[str], pool, count: int) -> list[int]:
    """`count` requests spread over the gateways in turn, one kept-alive client each: their status codes."""
    clients = [httpx.Client(base_url=u, headers=AUTH, timeout=30) for u in urls]
    try:
        return list(pool.map(lambda i: clients[i % len(urls)].post(CHAT, json=BODY).status_code, range(count)))
    finally:
        for client in clients:
            client.close()


def test_a_busy_tenant_skips_the_round_trip_and_its_counts_end_exact(tmp_path, redis):
    in_fresh_minute(15)
    client = redis_py.Redis.from_url(redis.url)
    sent = 300
    with ScriptedUpstream(answer) as upstream:
        config = one_tenant(tmp_path, upstream.url, "busy", rpm=64_000, tpm=64_000_000, maxConcurrency=64)
        with (
            gateway(config, redis.url, reserve_min_rate=BUSY) as gw,
            httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as http,
        ):
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
    rpm = 1000
    with ScriptedUpstream(answer) as upstream:
        config = one_tenant(tmp_path, upstream.url, "sliced-rpm", rpm=rpm, tpm=None, maxConcurrency=64)
        with replicas(config, redis.url, 12, reserve_min_rate=BUSY) as (urls, pool):
            codes = load(urls, pool, rpm + 300)
    admitted = codes.count(200)
    assert set(codes) <= {200, 429}
    assert admitted <= rpm and upstream.requests == admitted
    # Slices held unused by one replica can refuse a little early elsewhere: at most 1.5 slices each.
    assert admitted >= rpm - 3 * 1.5 * (rpm // RESERVE_FRACTION), admitted


def test_kept_leases_never_let_the_cap_be_exceeded_across_replicas(tmp_path, redis):
    cap, delay = 24, [0.0]

    def paced(upstream, handler, body) -> None:
        if not delay[0] or not upstream.wait_or_abort(handler, delay[0]):
            send_json(handler, completion())

    with ScriptedUpstream(paced) as upstream:
        config = one_tenant(tmp_path, upstream.url, "sliced-cap", maxConcurrency=cap, maxQueue=1000)
        with replicas(config, redis.url, 2 * cap, redis_timeout_seconds=3, reserve_min_rate=BUSY) as (urls, pool):
            client = redis_py.Redis.from_url(redis.url)
            # Light load (6 in flight, a quarter of the cap): the replicas keep leases and admit
            # from slices. Then twice the cap at once on slow answers, starting with those leases.
            with concurrent.futures.ThreadPoolExecutor(6) as light:
                before = script_calls(client)
                codes = load(urls, light, 900)
                calls = script_calls(client) - before
            delay[0] = 0.02
            codes += load(urls, pool, 600)
    assert codes == [200] * 1500
    assert calls < 900 / 2, f"{calls} script calls for 900 requests: slices were not used"
    assert upstream.peak <= cap, f"{upstream.peak} in flight at the engine for a cap of {cap}"
