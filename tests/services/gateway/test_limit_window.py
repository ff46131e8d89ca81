"""The sliding window in Redis (limit_scripts' admit and finish) and in-process (LocalWindow) decide alike.

With Redis away the gateway falls back to LocalWindow; a fallback that counts differently would
admit more, or refuse sooner, than the shared limit does. Hypothesis drives both with one random
history, admissions and the corrections finish() sends, on one simulated clock that crosses
minutes, and every decision must match field for field: allowed, reason, remaining requests and
tokens, reset. The clock is simulated for both: the script takes the time as an argument (it asks
Redis' own clock only for concurrency leases, which a cap of 0 leaves out).
"""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import event, given, settings
from hypothesis import strategies as st

from services.gateway.limit_scripts import SCRIPTS
from services.gateway.limit_window import WINDOW_MS, LocalWindow, window_keys
from services.gateway.ratelimit import RateLimiter, _slot_keys
from services.gateway.redis_client import RedisClient

TENANTS = ("a", "b")
LEASE_MS = 15_000
# Fresh tenant names per example: the Redis counters of one history never meet another's.
HISTORIES = itertools.count()

# No limit stays possible (the script and LocalWindow read it as -1), but most histories have one.
limits = st.tuples(
    st.integers(1, 5) | st.integers(1, 5) | st.none(), st.integers(0, 250) | st.integers(0, 250) | st.none()
)
advance = st.one_of(
    *[st.integers(0, 2_000)] * 3,  # within a minute, mostly: counts build up
    st.integers(0, 2 * WINDOW_MS),  # across one minute or two
    st.tuples(st.just("next minute"), st.integers(0, 2)),  # onto a minute's first milliseconds
)
# Costs: small ones often (a cost of 0 charges no tokens in the script), up to half a tight limit.
costs = st.integers(0, 3) | st.integers(0, 120)
admit = st.tuples(st.just("admit"), st.sampled_from(TENANTS), advance, costs)
# finish(): None never reached an engine (full refund), "no usage" keeps the estimate, a number is the usage.
finish = st.tuples(st.just("finish"), st.integers(0, 1_000), st.none() | st.just("no usage") | st.integers(0, 200))
histories = st.tuples(
    st.integers(0, 3 * WINDOW_MS),
    st.fixed_dictionaries({tenant: limits for tenant in TENANTS}),
    st.lists(st.one_of(admit, admit, finish), min_size=10, max_size=50),
)


def corrections(cost: int, outcome, bucket: int, now_bucket: int) -> tuple[int, int]:
    """What RateLimiter.finish corrects: (requests, tokens)."""
    if outcome is None:
        requests, tokens = -1, -cost
    elif outcome == "no usage":
        requests, tokens = 0, 0
    else:
        requests, tokens = 0, outcome - cost
    if bucket < now_bucket - 1:
        return 0, 0
    return requests, tokens


async def run_both(redis_url: str, start: int, tenant_limits: dict, steps: list) -> tuple[list, list]:
    history = next(HISTORIES)
    names = {tenant: f"window-{history}-{tenant}" for tenant in TENANTS}
    decide = RateLimiter(None, fail_closed=False)._decision  # what the gateway reads from either answer
    local = LocalWindow()
    client = RedisClient(redis_url, 2)
    admit_text, admit_sha = SCRIPTS["admit"]
    finish_text, finish_sha = SCRIPTS["finish"]
    await client.call("SCRIPT", "LOAD", admit_text)
    await client.call("SCRIPT", "LOAD", finish_text)
    now = 1_800_000_000_000 + start
    admitted: list[tuple[str, int, int]] = []  # (tenant, cost, bucket)
    from_redis, from_local = [], []
    for step in steps:
        if step[0] == "admit":
            _, tenant, forward, cost = step
            now = now + forward if isinstance(forward, int) else (now // WINDOW_MS + 1) * WINDOW_MS + forward[1]
            rpm, tpm = tenant_limits[tenant]
            rpm, tpm = -1 if rpm is None else rpm, -1 if tpm is None else tpm
            name, bucket = names[tenant], now // WINDOW_MS
            keys = (*window_keys(name, bucket), *_slot_keys(name))
            shared = await client.call(
                "EVALSHA", admit_sha, len(keys), *keys, now, WINDOW_MS, rpm, tpm, cost, 0, 0, LEASE_MS, "lease"
            )
            alone = local.check(name, now, rpm, tpm, cost)
            from_redis.append((step, now, decide(name, shared), int(shared[5])))
            from_local.append((step, now, decide(name, alone), int(alone[5])))
            if shared[0] == 1:
                admitted.append((name, cost, bucket))
        elif admitted:
            _, pick, outcome = step
            name, cost, bucket = admitted.pop(pick % len(admitted))
            requests, tokens = corrections(cost, outcome, bucket, now // WINDOW_MS)
            if requests or tokens:
                keys = (*_slot_keys(name), *window_keys(name, bucket)[::2])
                await client.call(
                    "EVALSHA", finish_sha, len(keys), *keys, requests, tokens, WINDOW_MS, 0, LEASE_MS, "", ""
                )
                local.adjust(name, bucket, requests, tokens)
                event("a correction sent")
    await client.close()
    return from_redis, from_local


@settings(max_examples=60, deadline=None)
@given(histories)
def test_the_redis_window_and_its_in_process_fallback_decide_alike(redis, history):
    start, tenant_limits, steps = history
    from_redis, from_local = asyncio.run(run_both(redis.url, start, tenant_limits, steps))
    # Shown by --hypothesis-show-statistics: how often the histories refuse, and for which limit.
    for _, _, decision, _ in from_redis:
        event(f"a check answered {decision.reason or 'admitted'!r}")
    if len({now // WINDOW_MS for _, now, _, _ in from_redis}) > 1:
        event("a history spanning minutes")
    assert from_local == from_redis
