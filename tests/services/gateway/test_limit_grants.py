"""The limiter's reserves against a real Redis, step by step: every admitted request holds its own
lease in Redis, and every admission is counted there before it is made."""

from __future__ import annotations

import asyncio
import random
import time

import redis as redis_py

from services.gateway.limit_grants import GRANT_MIN_RATE, POOL_SHARE, RESERVE_FRACTION
from services.gateway.limit_window import WINDOW_MS, window_keys
from services.gateway.ratelimit import RateLimiter
from tests.services.gateway.test_gateway_limits import in_fresh_minute


def test_every_request_in_flight_holds_its_own_lease_in_redis(redis):
    cap, tenant = 64, f"leases-{random.getrandbits(32)}"
    client = redis_py.Redis.from_url(redis.url, decode_responses=True)
    rng = random.Random(7)

    async def run() -> int:
        limiter = RateLimiter(redis.url, fail_closed=True)
        in_flight, seen, reused = [], set(), 0
        try:
            for step in range(1500):
                # Mostly light load (leases are kept), with bursts up to the cap (they must not be).
                busy = (step // 300) % 2 == 1
                if in_flight and (len(in_flight) >= (cap if busy else 6) or rng.random() < 0.45):
                    limiter.finish(in_flight.pop(rng.randrange(len(in_flight))), 30, True, cap)
                else:
                    decision, admission = await limiter.admit(tenant, None, None, 20, cap, 1000)
                    assert admission is not None and admission.holding, decision
                    reused += admission.lease in seen  # a kept lease, admitted without Redis
                    seen.add(admission.lease)
                    in_flight.append(admission)
                await asyncio.sleep(0)
                await limiter.redis.call("PING")  # whatever was deferred has reached Redis
                leases = [a.lease for a in in_flight]
                assert len(set(leases)) == len(leases), "two requests in flight share a lease"
                held = set(client.zrange(f"rl:{{{tenant}}}:slots", 0, -1))
                assert set(leases) <= held, "a request in flight holds a lease Redis does not count"
                assert len(held) <= cap
                # Kept idle for the next request: a few, so other replicas are not kept waiting.
                assert len(held) - len(leases) <= cap // POOL_SHARE
            for admission in in_flight:
                limiter.finish(admission, 30, True, cap)
            return reused
        finally:
            await limiter.close()

    assert asyncio.run(run()) > GRANT_MIN_RATE, "no lease was kept: the test did not exercise reserves"
    assert client.zcard(f"rl:{{{tenant}}}:slots") == 0  # closing gave back the kept leases


def test_a_slice_is_counted_before_it_is_used_and_its_rest_given_back(redis):
    in_fresh_minute(8)
    rpm, tenant = 64 * 1000, f"slice-{random.getrandbits(32)}"
    slice_ = rpm // RESERVE_FRACTION
    client = redis_py.Redis.from_url(redis.url)

    def counted() -> int:
        return int(client.get(window_keys(tenant, int(time.time() * 1000) // WINDOW_MS)[0]) or 0)

    async def run() -> int:
        limiter = RateLimiter(redis.url, fail_closed=True)
        admitted = 0
        try:
            # Busy, but using far less than a slice a second: its slice is kept, not added to.
            started = time.monotonic()
            while time.monotonic() < started + 2.5:
                _, admission = await limiter.admit(tenant, rpm, None, 1, 0, 0)
                assert admission is not None
                admitted += 1
                limiter.finish(admission, 1, True, 0)
                await limiter.redis.call("PING")
                # Never fewer counted than admitted; ahead by at most one and a half slices (one
                # asked for while half of the other is left).
                assert admitted <= counted() <= admitted + 1.5 * slice_
                await asyncio.sleep(0.003)
            assert counted() > admitted, "no slice was reserved: the test did not exercise them"
        finally:
            await limiter.close()
        return admitted

    admitted = asyncio.run(run())
    assert counted() == admitted  # closing gave the rest back


def test_kept_leases_that_redis_lost_are_never_reused(redis):
    cap, tenant = 64, f"lost-{random.getrandbits(32)}"
    client = redis_py.Redis.from_url(redis.url, decode_responses=True)
    slots = f"rl:{{{tenant}}}:slots"

    async def run() -> None:
        limiter = RateLimiter(redis.url, fail_closed=True, lease_seconds=0.3)  # renewed every 0.1 s
        try:
            for _ in range(2 * GRANT_MIN_RATE):
                _, admission = await limiter.admit(tenant, None, None, 1, cap, 10)
                limiter.finish(admission, 1, True, cap)
            await limiter.redis.call("PING")
            assert client.zcard(slots) > 0, "no lease was kept: the test did not exercise reserves"
            client.delete(slots)  # what a flush or a restart without data does
            lost = time.monotonic()
            while time.monotonic() < lost + 0.9:  # busy: the kept leases never idle long enough to go back
                _, admission = await limiter.admit(tenant, None, None, 1, cap, 10)
                await limiter.redis.call("PING")
                if time.monotonic() > lost + 0.4:  # a renewal (every 0.1 s) has found the loss
                    assert client.zscore(slots, admission.lease) is not None, "admitted on a lease Redis lost"
                limiter.finish(admission, 1, True, cap)
                await asyncio.sleep(0.005)
        finally:
            await limiter.close()

    asyncio.run(run())


def test_with_reserves_off_every_admission_is_counted_as_it_comes(redis):
    in_fresh_minute(5)
    rpm, tenant = 64 * 1000, f"off-{random.getrandbits(32)}"
    client = redis_py.Redis.from_url(redis.url)

    async def run() -> None:
        limiter = RateLimiter(redis.url, fail_closed=True, reserve_min_rate=0)
        try:
            for admitted in range(1, 3 * GRANT_MIN_RATE):
                _, admission = await limiter.admit(tenant, rpm, None, 1, 8, 8)
                assert client.get(window_keys(tenant, admission.bucket)[0]) == str(admitted).encode()
                limiter.finish(admission, 1, True, 8)
            assert not limiter.grants.by_tenant
        finally:
            await limiter.close()

    asyncio.run(run())
