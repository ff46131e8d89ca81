"""Per-tenant requests-per-minute and tokens-per-minute, shared by every gateway replica.

A sliding-window counter (the current minute's count plus the previous minute's, weighted by
how much of it still overlaps the window) evaluated and updated in ONE Redis Lua script: the
check and the increment are atomic, so N replicas together admit no more than the limit
(unlike a read-then-write from each replica, LiteLLM issue #40291), and requests and tokens
cost a single round trip; checks issued in the same event-loop turn share one write (see
redis_client.py). The `limits` library implements the same algorithm but needs two
round trips for two limits, and its Redis extra pins `packaging<26`, which conflicts with the
Pulumi SDK in this repository's environment.

When Redis is unreachable the same algorithm runs in-process (each replica then enforces the
full limit on its own: a documented degradation, visible as gateway_ratelimit_backend_up 0),
or, with fail_closed, requests are refused.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from services.gateway.redis_client import RedisClient, RedisError, RedisReplyError

WINDOW_MS = 60_000
LOG = logging.getLogger("gateway.ratelimit")

# KEYS: requests:cur, requests:prev, tokens:cur, tokens:prev
# ARGV: now_ms, window_ms, rpm (-1 = none), tpm (-1 = none), token cost
# Returns: {allowed 1|0, reason 0 ok|1 requests|2 tokens, remaining requests, remaining tokens, ms to reset}
_SCRIPT = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm, cost = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local weight = 1 - (now % window) / window
local reset = window - (now % window)
local counts = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local requests = (tonumber(counts[2] or '0') * weight) + tonumber(counts[1] or '0')
local tokens = (tonumber(counts[4] or '0') * weight) + tonumber(counts[3] or '0')
if rpm >= 0 and requests + 1 > rpm then return {0, 1, 0, math.max(tpm - tokens, 0), reset} end
if tpm >= 0 and tokens + cost > tpm then return {0, 2, math.max(rpm - requests, 0), 0, reset} end
-- A counter is new when the increment is all it holds (costs are >= 1): only then set its expiry.
if redis.call('INCRBY', KEYS[1], 1) == 1 then redis.call('PEXPIRE', KEYS[1], window * 2) end
if redis.call('INCRBY', KEYS[3], cost) == cost then redis.call('PEXPIRE', KEYS[3], window * 2) end
return {1, 0, math.max(rpm - requests - 1, 0), math.max(tpm - tokens - cost, 0), reset}
"""

_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()  # what SCRIPT LOAD answers: no round trip to learn it
REASONS = {0: "", 1: "requests", 2: "tokens"}
# Redis must answer a batch of checks within this, or the request goes on with the local limiter.
REDIS_TIMEOUT_SECONDS = 0.25
# How long a refusal is reused without asking Redis; token refusals could admit a smaller request
# a little sooner, so this stays short.
REFUSAL_CACHE_SECONDS = 0.2


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "", "requests" or "tokens"
    remaining_requests: int
    remaining_tokens: int
    reset_seconds: float


ALLOW = Decision(True, "", -1, -1, 0.0)


def _keys(tenant: str, bucket: int) -> tuple[str, str, str, str]:
    # The hash tag keeps a tenant's keys in one Redis Cluster slot.
    return (
        f"rl:{{{tenant}}}:r:{bucket}",
        f"rl:{{{tenant}}}:r:{bucket - 1}",
        f"rl:{{{tenant}}}:t:{bucket}",
        f"rl:{{{tenant}}}:t:{bucket - 1}",
    )


class LocalWindow:
    """The script's algorithm in-process, for when Redis is away."""

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}

    def check(self, tenant: str, now_ms: int, rpm: int, tpm: int, cost: int) -> list[float]:
        bucket = now_ms // WINDOW_MS
        rc, rp, tc, tp = _keys(tenant, bucket)
        weight = 1 - (now_ms % WINDOW_MS) / WINDOW_MS
        reset = WINDOW_MS - now_ms % WINDOW_MS
        requests = self.counts.get(rp, 0) * weight + self.counts.get(rc, 0)
        tokens = self.counts.get(tp, 0) * weight + self.counts.get(tc, 0)
        if rpm >= 0 and requests + 1 > rpm:
            return [0, 1, 0, max(tpm - tokens, 0), reset]
        if tpm >= 0 and tokens + cost > tpm:
            return [0, 2, max(rpm - requests, 0), 0, reset]
        self.counts[rc] = self.counts.get(rc, 0) + 1
        self.counts[tc] = self.counts.get(tc, 0) + cost
        if len(self.counts) > 100_000:  # drop buckets older than the window
            self.counts = {k: v for k, v in self.counts.items() if int(k.rsplit(":", 1)[1]) >= bucket - 1}
        return [1, 0, max(rpm - requests - 1, 0), max(tpm - tokens - cost, 0), reset]


class RateLimiter:
    def __init__(self, redis_url: str | None, fail_closed: bool, on_backend_change=None):
        self.redis = RedisClient(redis_url, REDIS_TIMEOUT_SECONDS) if redis_url else None
        self.local = LocalWindow()
        self.fail_closed = fail_closed
        self.backend_up = self.redis is not None
        self._retry_at = 0.0
        self._on_backend_change = on_backend_change
        # tenant -> (monotonic deadline, decision): a refused tenant is refused locally for a moment,
        # so a flood costs no Redis round trips. This can only refuse more, never admit more.
        self._refused: dict[str, tuple[float, Decision]] = {}

    def _set_backend(self, up: bool, problem: str = "") -> None:
        if up != self.backend_up:
            self.backend_up = up
            if up:
                LOG.warning("rate-limit backend redis is back; limits are shared across replicas again")
            else:
                LOG.error(
                    "rate-limit backend redis unavailable; %s",
                    "refusing requests (fail-closed)" if self.fail_closed else "limiting per process",
                    extra={"problem": problem},
                )
            if self._on_backend_change:
                self._on_backend_change(up)

    def refused_now(self, tenant: str) -> Decision | None:
        """A refusal still fresh for this tenant: lets the request path answer 429 before reading the body."""
        refused = self._refused.get(tenant)
        if refused is None:
            return None
        if refused[0] > time.monotonic():
            return refused[1]
        del self._refused[tenant]
        return None

    async def check(self, tenant: str, rpm: int | None, tpm: int | None, cost: int) -> Decision | None:
        """The decision, or None when the backend is down and the gateway fails closed."""
        if rpm is None and tpm is None:
            return ALLOW
        refused = self.refused_now(tenant)
        if refused is not None:
            return refused
        now_ms = int(time.time() * 1000)
        limits = (-1 if rpm is None else rpm, -1 if tpm is None else tpm, cost)
        result = None
        if self.redis is not None and (not self._retry_at or time.monotonic() >= self._retry_at):
            try:
                result = await self._evaluate(_keys(tenant, now_ms // WINDOW_MS), (now_ms, WINDOW_MS, *limits))
                self._retry_at = 0.0
                self._set_backend(True)
            except RedisError as exc:
                # Do not pay a connect timeout on every request while Redis is away: retry once a second.
                self._retry_at = time.monotonic() + 1.0
                self._set_backend(False, str(exc))
        if result is None:
            if self.redis is not None and self.fail_closed:
                return None
            result = self.local.check(tenant, now_ms, *limits)
        allowed, reason, remaining_requests, remaining_tokens, reset_ms = result
        decision = Decision(
            bool(allowed), REASONS[int(reason)], int(remaining_requests), int(remaining_tokens), float(reset_ms) / 1000
        )
        if not decision.allowed:
            self._refused[tenant] = (time.monotonic() + min(decision.reset_seconds, REFUSAL_CACHE_SECONDS), decision)
        return decision

    async def _evaluate(self, keys: tuple[str, ...], args: tuple[int, ...]) -> list:
        try:
            return await self.redis.call("EVALSHA", _SHA, len(keys), *keys, *args)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # A new or restarted Redis has not seen the script yet: EVAL runs it and caches it there.
        return await self.redis.call("EVAL", _SCRIPT, len(keys), *keys, *args)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()
