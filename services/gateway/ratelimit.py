"""Per-tenant requests and tokens per minute, and the in-flight cap, shared by every gateway replica.

Rate limits: a sliding-window counter (the current minute's count plus the previous minute's,
weighted by how much of it still overlaps the window). Concurrency: a semaphore of leases that
expire unless renewed, with a bounded queue. Both in Redis Lua scripts (limit_scripts.py), the
rate check and the slot in ONE script: N replicas together admit no more than the limits and
hold no more than `maxConcurrency` requests at the engines, and admission costs one round trip;
calls issued in the same event-loop turn share one write (redis_client.py). A busy tenant's
replica admits most requests from a slice of the limits it reserved ahead, without that round
trip (limit_grants.py, which says why the limits stay exact). The `limits` library
implements the same window but needs two round trips for two limits, and its Redis extra pins
`packaging<26`, which conflicts with the Pulumi SDK in this repository's environment.

Tokens are charged up front and corrected when the request ends (`finish`): to what the engine
reported using, or refunded in full for a request that never reached an engine. The correction
lands in the minute the charge was made in, while that minute still counts in the window.

Redis unreachable: the same window runs in-process and the in-flight cap is enforced per process
(each replica then enforces the full limits on its own: a documented degradation, visible as
gateway_ratelimit_backend_up 0), or, with fail_closed, requests are refused. A script that
answers with an error is a bug in that request's handling: it is logged and that request
refused; Redis is not taken for down.

A Redis that restarts without its data, or is flushed, starts every tenant's window from zero:
in that minute a tenant can be admitted up to twice its limit (the lost counts plus a fresh
window), never more, and leases held at that moment are forgotten, so the cap can be exceeded
until they end (at most one cap's worth more, for at most the longest request); a replica finds
out at its next renewal (a third of the lease) and stops reusing the leases it kept. Redis' append-only
file with `appendfsync everysec` bounds what a restart loses to about one second.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import random
import time

from services.gateway.limit_grants import GRANT_MIN_RATE, SWEEP_SECONDS, Grants
from services.gateway.limit_scripts import ScriptCaller, ScriptFailed
from services.gateway.limit_window import ALLOW, WINDOW_MS, Admission, Decision, LocalWindow, window_keys
from services.gateway.redis_client import RedisClient, RedisError

LOG = logging.getLogger("gateway.ratelimit")
REASONS = {0: "", 1: "requests", 2: "tokens", 3: "queue"}
# How long a refusal is reused without asking Redis; token refusals could admit a smaller request
# a little sooner, so this stays short.
REFUSAL_CACHE_SECONDS = 0.2
# A queued request asks for a slot this often (with jitter) unless a request of this replica
# hands it one first; slots freed on other replicas reach it within this time.
CLAIM_INTERVAL_SECONDS = 0.05
# Count corrections of finished requests wait this long to be sent together: one script call per
# tenant and minute instead of one per request. The window lags the engines' usage by as much.
CORRECTION_DELAY_SECONDS = 0.1
SLOT_RELEASE_DELAY_SECONDS = 0.002


@functools.lru_cache(maxsize=4096)
def _slot_keys(tenant: str) -> tuple[str, str]:
    return f"rl:{{{tenant}}}:slots", f"rl:{{{tenant}}}:queue"


class RateLimiter:
    def __init__(
        self,
        redis_url: str | None,
        fail_closed: bool,
        lease_seconds: float = 15.0,
        on_backend_change=None,
        redis_timeout: float = 0.25,
        reserve_min_rate: int = GRANT_MIN_RATE,
    ) -> None:
        """`redis_timeout`: Redis must answer a batch of calls within it, or the request goes on without it.
        `reserve_min_rate`: a tenant's admissions a second that make this replica reserve (0: never)."""
        self.redis = RedisClient(redis_url, redis_timeout) if redis_url else None
        self.local = LocalWindow()
        self.fail_closed = fail_closed
        self.backend_up = self.redis is not None
        self.lease_ms = int(lease_seconds * 1000)
        self.scripts = ScriptCaller(self.redis, self._redis_failed, self._redis_answered)
        self._retry_at = 0.0
        self._on_backend_change = on_backend_change
        # tenant -> (monotonic deadline, decision): a refused tenant is refused locally for a moment,
        # so a flood costs no Redis round trips. This can only refuse more, never admit more.
        self._refused: dict[str, tuple[float, Decision]] = {}
        # Lease ids: unique across replicas and restarts without a system call per request.
        self._lease_prefix = f"{os.getpid():x}.{random.getrandbits(48):012x}."
        self._lease_ids = itertools.count()
        self._held: dict[str, set[str]] = {}  # tenant -> leases this replica holds in Redis
        self._waiting: dict[str, dict[str, asyncio.Future]] = {}  # tenant -> queued lease -> its wake-up
        self._renewer: asyncio.Task | None = None
        # (tenant, minute) -> [requests, tokens] corrections not yet sent (CORRECTION_DELAY_SECONDS)
        self._corrections: dict[tuple[str, int], list[int]] = {}
        self._correcting: asyncio.TimerHandle | None = None
        self.grants = Grants(self._pend, self._give_back, self._ask_slice, reserve_min_rate)
        self._sweeping: asyncio.TimerHandle | None = None

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

    def queue_full_here(self, tenant: str, max_queue: int) -> bool:
        """This replica alone already has `max_queue` of the tenant's requests waiting for a shared slot:
        the shared queue is full too, so a flood is refused without a round trip to Redis."""
        waiting = self._waiting.get(tenant)
        return waiting is not None and len(waiting) >= max_queue

    def _redis_usable(self) -> bool:
        return self.redis is not None and (not self._retry_at or time.monotonic() >= self._retry_at)

    def _redis_answered(self) -> None:
        self._retry_at = 0.0
        self._set_backend(True)

    def _redis_failed(self, exc: RedisError) -> None:
        # Do not pay a connect timeout on every request while Redis is away: retry once a second.
        self._retry_at = time.monotonic() + 1.0
        self._set_backend(False, str(exc))
        for tenant, lease in self.grants.forget():
            self._held.get(tenant, set()).discard(lease)

    async def admit(
        self, tenant: str, rpm: int | None, tpm: int | None, cost: int, cap: int, max_queue: int
    ) -> tuple[Decision, Admission | None] | None:
        """Charge the limits and take a shared slot or queue place: (decision, hold on the limits if admitted).

        None when the backend is down and the gateway fails closed; ScriptFailed when the script refused.
        Without Redis (none configured, or away) `holding` is True and the cap is the scheduler's, per process.
        """
        refused = self.refused_now(tenant)
        if refused is not None:
            return refused, None
        now_ms = int(time.time() * 1000)
        bucket = now_ms // WINDOW_MS
        limits = (-1 if rpm is None else rpm, -1 if tpm is None else tpm, cost)
        if self._redis_usable():
            shape, now = (rpm, tpm, cap), time.monotonic()
            lease = self.grants.take(tenant, bucket, shape, cost, now)
            if lease is not None:
                self.grants.after_admission(tenant, bucket, shape, cost, now)
                return ALLOW, Admission(tenant, cost, bucket, lease, True, shared=True)
            lease = self._lease_prefix + str(next(self._lease_ids))
            try:
                result = await self.scripts.run(
                    "admit",
                    (*window_keys(tenant, bucket), *_slot_keys(tenant)),
                    (now_ms, WINDOW_MS, *limits, cap, max_queue, self.lease_ms, lease),
                )
            except RedisError as exc:
                self._redis_failed(exc)
            else:
                decision = self._decision(tenant, result)
                if not decision.allowed:
                    return decision, None
                holding = int(result[5]) == 1
                if holding:
                    self._hold(tenant, lease)
                if holding or not cap:
                    self.grants.after_admission(tenant, bucket, shape, cost, now)
                return decision, Admission(tenant, cost, bucket, lease, holding, shared=True)
        if self.redis is not None and self.fail_closed:
            return None
        if rpm is None and tpm is None:
            return ALLOW, Admission(tenant, cost, bucket)
        decision = self._decision(tenant, self.local.check(tenant, now_ms, *limits))
        return decision, (Admission(tenant, cost, bucket) if decision.allowed else None)

    def _decision(self, tenant: str, result) -> Decision:
        allowed, reason, remaining_requests, remaining_tokens, reset_ms = result[:5]
        decision = Decision(
            bool(allowed), REASONS[int(reason)], int(remaining_requests), int(remaining_tokens), float(reset_ms) / 1000
        )
        if not decision.allowed and decision.reason != "queue":
            self._refused[tenant] = (time.monotonic() + min(decision.reset_seconds, REFUSAL_CACHE_SECONDS), decision)
        return decision

    def _hold(self, tenant: str, lease: str) -> None:
        self._held.setdefault(tenant, set()).add(lease)
        if self._renewer is None:
            self._renewer = asyncio.ensure_future(self._renew_forever())

    async def wait_for_slot(self, admission: Admission, cap: int) -> None:
        """Wait until a queued admission holds a shared slot; the caller cancels this when its client leaves."""
        tenant, lease = admission.tenant, admission.lease
        waiting = self._waiting.setdefault(tenant, {})
        loop = asyncio.get_running_loop()
        try:
            while True:
                wake = waiting[lease] = loop.create_future()
                try:
                    await asyncio.wait_for(wake, CLAIM_INTERVAL_SECONDS * random.uniform(0.5, 1.5))
                    break  # a request of this replica handed its slot over
                except TimeoutError:
                    pass
                try:
                    granted = await self.scripts.run("claim", _slot_keys(tenant), (cap, self.lease_ms, lease))
                except ScriptFailed:
                    raise
                except RedisError as exc:
                    # Redis went away while we waited: go on under the per-process cap.
                    self._redis_failed(exc)
                    break
                if granted == 1:
                    break
        finally:
            waiting.pop(lease, None)
            if not waiting:
                self._waiting.pop(tenant, None)
        admission.holding = True
        self._hold(tenant, lease)

    def finish(self, admission: Admission, used_tokens: int | None, reached_engine: bool, cap: int) -> None:
        """Give back the slot and correct the charge: to `used_tokens` when the engine reported usage,
        a full refund (requests too) when the request never reached an engine, else the estimate stays."""
        if not reached_engine:
            requests, tokens = -1, -admission.cost
        elif used_tokens is None:
            requests, tokens = 0, 0
        else:
            requests, tokens = 0, used_tokens - admission.cost
        now_bucket = int(time.time() * 1000) // WINDOW_MS
        if admission.bucket < now_bucket - 1:
            requests = tokens = 0  # that minute no longer counts
        if not admission.shared:
            self.local.adjust(admission.tenant, admission.bucket, requests, tokens)
            return
        if requests == 0 and tokens == 0 and not admission.lease:
            return
        tenant = admission.tenant
        waiting = self._waiting.get(tenant)
        if admission.holding and not waiting:
            # The common case, kept cheap for Redis: the slot kept for the tenant's next request
            # (limit_grants.py) or given back with a plain ZREM, and the count correction added to
            # this replica's pending ones, sent for all requests together.
            if admission.lease and not self.grants.keep(tenant, admission.lease, cap, time.monotonic()):
                self._give_back(tenant, admission.lease)
            if requests or tokens:
                self._pend(tenant, admission.bucket, requests, tokens)
            return
        held = self._held.get(tenant)
        if held is not None:
            held.discard(admission.lease)
        waiter = next(iter(waiting)) if admission.holding and waiting else ""
        keys = (*_slot_keys(tenant), *window_keys(tenant, admission.bucket)[::2])
        args = (requests, tokens, WINDOW_MS, cap, self.lease_ms, admission.lease, waiter)
        # Sent without a task of its own (one per request on the hot path costs more than the call):
        # the reply is handled in a callback.
        self.scripts.send("finish", keys, args, lambda handed: self._handed(tenant, waiter, handed))

    def _pend(self, tenant: str, bucket: int, requests: int, tokens: int) -> None:
        """Add to the minute's counts with the next corrections (CORRECTION_DELAY_SECONDS)."""
        pending = self._corrections.get((tenant, bucket))
        if pending is None:
            pending = self._corrections[(tenant, bucket)] = [0, 0]
        pending[0] += requests
        pending[1] += tokens
        if self._correcting is None:
            self._correcting = asyncio.get_running_loop().call_later(CORRECTION_DELAY_SECONDS, self._correct)

    def _give_back(self, tenant: str, lease: str) -> None:
        held = self._held.get(tenant)
        if held is not None:
            held.discard(lease)
        # Sent with the next admission's batch, or within SLOT_RELEASE_DELAY_SECONDS: a slot given
        # back that much later only ever makes the cap stricter.
        self.redis.defer(SLOT_RELEASE_DELAY_SECONDS, "ZREM", _slot_keys(tenant)[0], lease).add_done_callback(
            self.scripts.replied
        )

    def _ask_slice(self, tenant: str, bucket: int, shape: tuple, requests: int, tokens: int) -> None:
        now_ms = int(time.time() * 1000)
        if now_ms // WINDOW_MS != bucket:
            return  # the minute turned since the admission: its next one asks for the new minute
        rpm, tpm, _ = shape
        keys = (*window_keys(tenant, bucket), *_slot_keys(tenant))
        args = (now_ms, WINDOW_MS, -1 if rpm is None else rpm, -1 if tpm is None else tpm, requests, tokens)
        self.scripts.send(
            "reserve",
            keys,
            args,
            lambda reply: self.grants.granted(tenant, bucket, shape, requests, tokens, reply, time.monotonic()),
        )
        if self._sweeping is None:
            self._sweeping = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)

    def _sweep(self) -> None:
        self._sweeping = None
        if self.grants.sweep(time.monotonic()):
            self._sweeping = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)

    def _correct(self) -> list[asyncio.Future]:
        """Send the pending count corrections, one script call per tenant and minute."""
        self._correcting = None
        corrections, self._corrections = self._corrections, {}
        sent = []
        for (tenant, bucket), (requests, tokens) in corrections.items():
            if requests or tokens:
                keys = (*_slot_keys(tenant), *window_keys(tenant, bucket)[::2])
                sent.append(
                    self.scripts.send("finish", keys, (requests, tokens, WINDOW_MS, 0, self.lease_ms, "", ""), None)
                )
        return sent

    def _handed(self, tenant: str, waiter: str, handed) -> None:
        if handed == 1:
            # A waiter between two asks finds the slot on its next claim; one that left gives it back
            # with its own finish (which removes its lease from the slots too).
            wake = self._waiting.get(tenant, {}).get(waiter)
            if wake is not None and not wake.done():
                wake.set_result(None)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            for tenant, leases in list(self._held.items()):
                if not leases:
                    del self._held[tenant]
                    continue
                renewing = tuple(leases)  # the set changes while the call is out
                try:
                    renewed = await self.scripts.run("renew", _slot_keys(tenant)[:1], (self.lease_ms, *renewing))
                except (RedisError, ScriptFailed) as exc:
                    LOG.warning("could not renew concurrency leases", extra={"tenant": tenant, "problem": str(exc)})
                    continue
                if int(renewed) < len(renewing):
                    # Redis lost some (restarted or flushed), or renewed one in the ms it was taken
                    # (ZADD CH counts no change): a kept lease must not admit anyone again.
                    for lease in self.grants.lost(tenant):
                        self._give_back(tenant, lease)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        if self._correcting is not None:
            self._correcting.cancel()
        if self._sweeping is not None:
            self._sweeping.cancel()
        if self.redis is not None and self._redis_usable():
            for tenant in list(self.grants.by_tenant):
                self.grants.retire(tenant)  # the unused slice and idle leases go back
            # What is still pending belongs in the window: send it before the connection goes. The
            # PING's reply comes after those of the slots given back, which ride in its batch.
            await asyncio.wait([*self._correct(), self.redis.call("PING")], timeout=1.0)
        if self.redis is not None:
            await self.redis.close()
