"""The Redis Lua scripts behind the shared limits: admit, reserve a slice, claim a slot, finish, renew leases.

One script per step, so each step is one atomic round trip: admission checks the rate limits
AND takes a concurrency slot (or a queue place) in the same call, which is how the cross-replica
cap costs the request path nothing beyond the rate-limit check it already made.

Every number a script reads is checked to be an integer within bounds, and a script that finds
one out of bounds answers with an error reply naming the argument. The gateway never sends such
a value (it checks first), so that reply means a bug: the request is refused and it is logged,
but Redis is not taken for down.

Slots and queue places are leases: members of a sorted set scored by the Redis clock time (ms)
at which they expire. A replica renews the leases it holds; a replica that dies stops renewing,
and its slots come free once their leases expire.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from services.gateway.redis_client import RedisClient, RedisError, RedisReplyError

LOG = logging.getLogger("gateway.ratelimit")
# Error replies that mean Redis cannot serve right now (not a bug in the request): treated as down.
UNAVAILABLE = frozenset(
    ("LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "OOM", "MISCONF", "NOAUTH", "NOPERM", "WRONGPASS")
)  # fmt: skip

# Checks ARGV[i] for i in 1..#bounds against {low, high} and leaves the numbers in `n`.
_ARGUMENTS = """
local n = {}
for i, bound in ipairs(BOUNDS) do
  local v = tonumber(ARGV[i])
  if v == nil or v ~= math.floor(v) or v < bound[1] or v > bound[2] then
    return redis.error_reply('ERR gateway limit script: argument ' .. i .. ' (' .. tostring(ARGV[i]) ..
      ') is not an integer from ' .. bound[1] .. ' to ' .. bound[2])
  end
  n[i] = v
end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: requests:cur, requests:prev, tokens:cur, tokens:prev, slots, queue
# ARGV: now_ms, window_ms, rpm (-1 none), tpm (-1 none), cost, cap (0 = no shared cap), max_queue,
#       lease_ms, lease id
# Returns {allowed 1|0, reason 0 ok|1 requests|2 tokens|3 queue, remaining requests, remaining tokens,
#          ms to reset, 1 holding a slot | 2 queued | 0 neither}
ADMIT = (
    "local BOUNDS = {{0, 2^50}, {1, 2^40}, {-1, 2^50}, {-1, 2^50}, {0, 2^50}, {0, 1000000}, {0, 1000000},"
    " {1, 2^40}}"
    + _ARGUMENTS
    + """
local now, window, rpm, tpm, cost, cap, max_queue, lease_ms = unpack(n)
local lease = ARGV[9]
local weight = 1 - (now % window) / window
local reset = window - (now % window)
local counts = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local requests = (tonumber(counts[2] or '0') * weight) + tonumber(counts[1] or '0')
local tokens = (tonumber(counts[4] or '0') * weight) + tonumber(counts[3] or '0')
if rpm >= 0 and requests + 1 > rpm then return {0, 1, 0, math.max(tpm - tokens, 0), reset, 0} end
if tpm >= 0 and tokens + cost > tpm then return {0, 2, math.max(rpm - requests, 0), 0, reset, 0} end
local holding = 0
if cap > 0 then
  local t = clock()
  local held = redis.call('ZCARD', KEYS[5])
  -- Expired leases (of a replica that died) are swept only when they could be in the way.
  if held >= cap then
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', t)
    held = redis.call('ZCARD', KEYS[5])
  end
  if held < cap then
    redis.call('ZADD', KEYS[5], t + lease_ms, lease)
    redis.call('PEXPIRE', KEYS[5], lease_ms * 2)
    holding = 1
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', t)
    if redis.call('ZCARD', KEYS[6]) >= max_queue then
      -- Refused for a full queue before anything is counted: a refusal costs the tenant nothing.
      return {0, 3, math.max(rpm - requests, 0), math.max(tpm - tokens, 0), 1000, 0}
    end
    redis.call('ZADD', KEYS[6], t + lease_ms, lease)
    redis.call('PEXPIRE', KEYS[6], lease_ms * 2)
    holding = 2
  end
end
-- A counter is new when the increment is all it holds: only then set its expiry.
if redis.call('INCRBY', KEYS[1], 1) == 1 then redis.call('PEXPIRE', KEYS[1], window * 2) end
if cost > 0 and redis.call('INCRBY', KEYS[3], cost) == cost then redis.call('PEXPIRE', KEYS[3], window * 2) end
return {1, 0, math.max(rpm - requests - 1, 0), math.max(tpm - tokens - cost, 0), reset, holding}
"""
)

# A slice of the limits for one replica to admit from (limit_grants.py), counted now as if admitted,
# only while the window plus the slice stays within half of each limit; and how busy the slots are.
# KEYS: requests:cur, requests:prev, tokens:cur, tokens:prev, slots, queue
# ARGV: now_ms, window_ms, rpm (-1 none), tpm (-1 none), requests wanted, tokens wanted
# Returns {1 counted | 0 refused, slots held, queue length}
RESERVE = (
    "local BOUNDS = {{0, 2^50}, {1, 2^40}, {-1, 2^50}, {-1, 2^50}, {0, 2^40}, {0, 2^50}}"
    + _ARGUMENTS
    + """
local now, window, rpm, tpm, want_requests, want_tokens = unpack(n)
local weight = 1 - (now % window) / window
local counts = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local requests = (tonumber(counts[2] or '0') * weight) + tonumber(counts[1] or '0')
local tokens = (tonumber(counts[4] or '0') * weight) + tonumber(counts[3] or '0')
local ok = 1
if rpm >= 0 and (requests + want_requests) * 2 > rpm then ok = 0 end
if tpm >= 0 and (tokens + want_tokens) * 2 > tpm then ok = 0 end
if ok == 1 then
  if want_requests > 0 and redis.call('INCRBY', KEYS[1], want_requests) == want_requests then
    redis.call('PEXPIRE', KEYS[1], window * 2)
  end
  if want_tokens > 0 and redis.call('INCRBY', KEYS[3], want_tokens) == want_tokens then
    redis.call('PEXPIRE', KEYS[3], window * 2)
  end
end
return {ok, redis.call('ZCARD', KEYS[5]), redis.call('ZCARD', KEYS[6])}
"""
)

# A queued request's turn: take a slot if one is free, else stay queued (which renews the place).
# KEYS: slots, queue   ARGV: cap, lease_ms, lease id   Returns 1 holding a slot, 0 still queued
CLAIM = (
    "local BOUNDS = {{1, 1000000}, {1, 2^40}}"
    + _ARGUMENTS
    + """
local cap, lease_ms = unpack(n)
local lease = ARGV[3]
local t = clock()
-- Handed a slot by a finishing request of its replica while it was asking: it holds it already.
if redis.call('ZSCORE', KEYS[1], lease) then return 1 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) < cap then
  redis.call('ZREM', KEYS[2], lease)
  redis.call('ZADD', KEYS[1], t + lease_ms, lease)
  redis.call('PEXPIRE', KEYS[1], lease_ms * 2)
  return 1
end
redis.call('ZADD', KEYS[2], t + lease_ms, lease)
redis.call('PEXPIRE', KEYS[2], lease_ms * 2)
return 0
"""
)

# The end of a request: give back its slot or queue place, correct the counts it was charged (the
# tokens the engine really used, or a full refund for a request that never reached an engine), and
# hand the slot straight to a waiter of this replica if one is named.
# KEYS: slots, queue, requests:bucket, tokens:bucket (the bucket charged at admission)
# ARGV: request delta, token delta, window_ms, cap, lease_ms, lease id or '', waiter lease id or ''
# (without a lease: corrections of several finished requests at once, or a slice given back; a
# positive request delta counts admissions from a slice when requests are not limited)
# Returns 1 when the waiter now holds the slot, else 0
FINISH = (
    "local BOUNDS = {{-(2^40), 2^40}, {-(2^50), 2^50}, {1, 2^40}, {0, 1000000}, {1, 2^40}}"
    + _ARGUMENTS
    + """
local request_delta, token_delta, window, cap, lease_ms = unpack(n)
-- A lease is in the slots, or (a request that left while queued) in the queue.
if redis.call('ZREM', KEYS[1], ARGV[6]) == 0 then redis.call('ZREM', KEYS[2], ARGV[6]) end
local function adjust(key, delta)
  if delta == 0 then return end
  local v = redis.call('INCRBY', key, delta)
  -- Below zero only when the counter expired or was flushed since the charge: nothing to refund.
  if v <= 0 then redis.call('DEL', key) elseif v == delta then redis.call('PEXPIRE', key, window * 2) end
end
adjust(KEYS[3], request_delta)
adjust(KEYS[4], token_delta)
local waiter = ARGV[7]
if waiter ~= '' and cap > 0 then
  local t = clock()
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
  if redis.call('ZCARD', KEYS[1]) < cap and redis.call('ZREM', KEYS[2], waiter) == 1 then
    redis.call('ZADD', KEYS[1], t + lease_ms, waiter)
    return 1
  end
end
return 0
"""
)

# Keep this replica's slots: KEYS: slots   ARGV: lease_ms, lease ids...   Returns how many were still held.
RENEW = (
    "local BOUNDS = {{1, 2^40}}"
    + _ARGUMENTS
    + """
local expiry = clock() + n[1]
local held = 0
for i = 2, #ARGV do held = held + redis.call('ZADD', KEYS[1], 'XX', 'CH', expiry, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], n[1] * 2)
return held
"""
)

SCRIPTS = {name: (text, hashlib.sha1(text.encode()).hexdigest()) for name, text in (
    ("admit", ADMIT), ("reserve", RESERVE), ("claim", CLAIM), ("finish", FINISH), ("renew", RENEW),
)}  # fmt: skip


class ScriptFailed(Exception):
    """The limit script answered with an error: the request is refused, the limiter stays up."""


class ScriptCaller:
    """Calls the scripts by their hash, and tells Redis being away (`on_down(exc)`) from a script
    that refused its input (a bug: logged, counted with `on_error`, that request refused)."""

    def __init__(self, redis: RedisClient | None, on_down, on_up) -> None:
        self.redis, self._on_down, self._on_up = redis, on_down, on_up
        self.on_error = None  # called once per script error reply (a metric)

    def _failed(self, name: str, exc: RedisReplyError, what: str) -> None:
        if self.on_error is not None:
            self.on_error()
        LOG.error("rate-limit script %s failed%s", name, what, extra={"problem": str(exc)})

    async def run(self, name: str, keys: tuple[str, ...], args: tuple) -> object:
        """One script call; RedisError when Redis is away, ScriptFailed when the script refused its input."""
        text, sha = SCRIPTS[name]
        try:
            try:
                result = await self.redis.call("EVALSHA", sha, len(keys), *keys, *args)
            except RedisReplyError as exc:
                if exc.code != "NOSCRIPT":
                    raise
                # A new or restarted Redis has not seen the script yet: EVAL runs it and caches it there.
                result = await self.redis.call("EVAL", text, len(keys), *keys, *args)
        except RedisReplyError as exc:
            if exc.code in UNAVAILABLE:
                raise RedisError(str(exc)) from None
            self._failed(name, exc, "; refusing this request")
            raise ScriptFailed(str(exc)) from None
        self._on_up()
        return result

    def send(self, name: str, keys: tuple, args: tuple, done, retried: bool = False) -> asyncio.Future:
        """A script call whose reply goes to `done`; NOSCRIPT is retried with EVAL, errors are logged.
        Sent without a task of its own: one per request on the hot path costs more than the call."""
        text, sha = SCRIPTS[name]
        future = (
            self.redis.call("EVAL", text, len(keys), *keys, *args)
            if retried
            else self.redis.call("EVALSHA", sha, len(keys), *keys, *args)
        )

        def replied(future: asyncio.Future) -> None:
            exc = future.exception()
            if exc is None:
                if done is not None:
                    done(future.result())
            elif isinstance(exc, RedisReplyError) and exc.code == "NOSCRIPT" and not retried:
                self.send(name, keys, args, done, retried=True)
            elif isinstance(exc, RedisReplyError) and exc.code not in UNAVAILABLE:
                self._failed(name, exc, "")
            else:
                # A slot comes free when its lease expires; a count correction is lost.
                self._on_down(exc)

        future.add_done_callback(replied)
        return future

    def replied(self, future: asyncio.Future) -> None:
        """For a plain command nobody awaits (a slot given back): log a bug, note Redis away."""
        exc = future.exception()
        if isinstance(exc, RedisReplyError) and exc.code not in UNAVAILABLE:
            LOG.error("giving back a concurrency slot failed", extra={"problem": str(exc)})
        elif exc is not None:
            self._on_down(exc)
