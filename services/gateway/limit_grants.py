"""Reserves: a busy tenant's share of its limits, held by one replica so most of its requests are
admitted without a round trip to Redis.

One request at a time, the round trip to Redis is most of what the gateway adds to a request (two
process wake-ups and a script, on the request's path). So a replica that admits GRANT_MIN_RATE
(`GATEWAY_RESERVE_MIN_RATE`) or more of a tenant's requests in a second reserves a slice of each
rate limit (a RESERVE_FRACTION of it) in Redis, counted in the current minute as if admitted, and
admits from that slice locally.
The slice is topped up before it runs out; what is left unused goes back when the minute ends, the
limits change, or GRANT_SECONDS pass without a top-up. Slots: while a reserve is held, a finished
request's lease stays held (and renewed) for the tenant's next request instead of being given
back, at most `cap // POOL_SHARE` of them, each for at most POOL_IDLE_SECONDS unused.

Why the limits stay exact across replicas: a slice is counted in Redis before any request uses
it, within the same minute; and Redis grants one only while the tenant's window plus the slice is
at most half its limit, and idle leases only while at most half the cap is held and nobody queues.
Near a limit every request is checked by Redis, as without reserves. What it costs: a replica
asks for more only when less than half its slice is left, so it holds at most one and a half
slices unused; the minute's counts in Redis run ahead of what was admitted by that much, and a
replica whose traffic for the tenant stops gives it back within GRANT_SECONDS (plus a sweep), in
which time other replicas may refuse a request that much early.
A quiet tenant (under the rate) never gets a reserve: each request is counted exactly, as with
the rate set to 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GRANT_MIN_RATE = 50  # the default of admissions in one second at this replica before it reserves
GRANT_SECONDS = 1.0
RESERVE_FRACTION = 64  # a slice is this fraction of a limit (1/64)
POOL_SHARE = 8  # idle leases kept: at most the cap divided by this
POOL_IDLE_SECONDS = 0.25
SWEEP_SECONDS = 0.25
RETRY_SECONDS = 1.0  # after Redis refused a slice (the tenant is near its limit), ask again this late

Limits = tuple  # (rpm or None, tpm or None, cap): what a reserve was taken under


@dataclass(slots=True)
class Grant:
    bucket: int  # the minute the slice was counted in
    limits: Limits
    requests: int = 0  # left of the slice (counted only when rpm is set)
    tokens: int = 0  # left of the slice (counted only when tpm is set)
    expires: float = 0.0  # monotonic; no slice to admit from after it
    asking_until: float = 0.0  # a request for a slice is in flight until then
    retry_at: float = 0.0
    pool_ok: bool = False  # Redis said at most half the cap was held, with nobody queued
    pool: list = field(default_factory=list)  # [lease, idle since]


class Grants:
    """This replica's reserves. Redis is reached through the three callbacks the limiter gives:
    `adjust(tenant, bucket, requests, tokens)` adds to the minute's counts (negative: gives back),
    `release(tenant, lease)` gives a slot back, `ask(tenant, bucket, limits, requests, tokens)` asks
    Redis for a slice and calls `granted` with its reply."""

    def __init__(self, adjust, release, ask, min_rate: int = GRANT_MIN_RATE) -> None:
        """`min_rate`: admissions of a tenant in one second before a slice is asked for; 0: never."""
        self._adjust, self._release, self._ask = adjust, release, ask
        self.min_rate = min_rate
        self.by_tenant: dict[str, Grant] = {}
        self._busy: dict[str, list[int]] = {}  # tenant -> [second, admissions in it]

    def take(self, tenant: str, bucket: int, limits: Limits, cost: int, now: float) -> str | None:
        """Admit one request from the tenant's slice: its lease ("" without a cap), or None when the
        slice (or an idle lease) is not there and Redis must be asked."""
        grant = self.by_tenant.get(tenant)
        if grant is None:
            return None
        if grant.bucket != bucket or grant.limits != limits:
            self.retire(tenant)
            return None
        if grant.expires <= now:
            return None  # lapsed (the sweep gives it back), or its first slice is still being asked for
        rpm, tpm, cap = limits
        if (rpm is not None and grant.requests < 1) or (tpm is not None and grant.tokens < cost):
            return None
        lease = ""
        if cap:
            if not grant.pool:
                return None
            lease = grant.pool.pop()[0]
        if rpm is None or tpm is None:
            # An unlimited count is not sliced, but still counted (as an admission would be).
            self._adjust(tenant, bucket, 1 if rpm is None else 0, cost if tpm is None else 0)
        if rpm is not None:
            grant.requests -= 1
        if tpm is not None:
            grant.tokens -= cost
        return lease

    def after_admission(self, tenant: str, bucket: int, limits: Limits, cost: int, now: float) -> None:
        """Ask for a slice when the tenant is busy enough and its slice is low; when it is about to
        lapse with enough left, ask for nothing more, to keep it."""
        if not self.min_rate:
            return
        rpm, tpm, _ = limits
        want_requests = 0 if rpm is None else rpm // RESERVE_FRACTION
        want_tokens = 0 if tpm is None else tpm // RESERVE_FRACTION
        if (rpm is not None and want_requests < 2) or (tpm is not None and want_tokens < 4 * cost):
            return  # a slice this small would save nothing: every request goes to Redis
        grant = self.by_tenant.get(tenant)
        if grant is not None and grant.bucket == bucket and grant.limits == limits and now < grant.expires:
            if now < grant.asking_until or now < grant.retry_at:
                return
            low = (rpm is not None and grant.requests * 2 < want_requests) or (
                tpm is not None and grant.tokens * 2 < want_tokens
            )
            if not low:
                if now < grant.expires - GRANT_SECONDS / 2:
                    return
                # Still enough left, about to lapse: keep it (and hear how busy the slots are)
                # without reserving more, so what sits unused stays within one slice.
                want_requests = want_tokens = 0
        else:
            if grant is not None and (now < grant.asking_until or now < grant.retry_at):
                return
            second = int(now)
            busy = self._busy.get(tenant)
            if busy is None or busy[0] != second:
                busy = self._busy[tenant] = [second, 0]
            busy[1] += 1
            if busy[1] < self.min_rate:
                return
            if len(self._busy) > 4096:
                self._busy = {t: b for t, b in self._busy.items() if b[0] == second}
            if grant is None:
                grant = self.by_tenant[tenant] = Grant(bucket, limits)
        grant.asking_until = now + GRANT_SECONDS
        self._ask(tenant, bucket, limits, want_requests, want_tokens)

    def granted(self, tenant: str, bucket: int, limits: Limits, requests: int, tokens: int, reply, now: float) -> None:
        """Redis' answer to a slice: {1 counted | 0 refused, slots held, queue length}."""
        reserved, held, queued = (int(v) for v in reply)
        grant = self.by_tenant.get(tenant)
        if grant is not None and (grant.bucket != bucket or grant.limits != limits):
            self.retire(tenant)
            grant = None
        if grant is None:
            if not reserved:
                return
            grant = self.by_tenant[tenant] = Grant(bucket, limits)
        grant.asking_until = 0.0
        if reserved:
            grant.requests += requests
            grant.tokens += tokens
            grant.expires = now + GRANT_SECONDS
        else:
            grant.retry_at = now + RETRY_SECONDS
        cap = limits[2]
        grant.pool_ok = cap > 0 and held * 2 <= cap and queued == 0
        if not grant.pool_ok:
            self._empty_pool(tenant, grant)

    def keep(self, tenant: str, lease: str, cap: int, now: float) -> bool:
        """Keep a finished request's lease for the tenant's next request (True), or let it go back."""
        grant = self.by_tenant.get(tenant)
        if (
            grant is None
            or not grant.pool_ok
            or grant.limits[2] != cap
            or grant.expires <= now
            or len(grant.pool) >= cap // POOL_SHARE
        ):
            return False
        grant.pool.append([lease, now])
        return True

    def retire(self, tenant: str) -> None:
        """Give back what is left of the tenant's slice and its idle leases."""
        grant = self.by_tenant.pop(tenant, None)
        if grant is None:
            return
        rpm, tpm, _ = grant.limits
        requests = grant.requests if rpm is not None else 0
        tokens = grant.tokens if tpm is not None else 0
        if requests or tokens:
            self._adjust(tenant, grant.bucket, -requests, -tokens)
        self._empty_pool(tenant, grant)

    def _empty_pool(self, tenant: str, grant: Grant) -> None:
        pool, grant.pool = grant.pool, []
        for lease, _ in pool:
            self._release(tenant, lease)

    def sweep(self, now: float) -> bool:
        """Retire lapsed slices and give back leases idle too long; True while anything is held."""
        for tenant, grant in list(self.by_tenant.items()):
            if grant.expires <= now and now >= grant.asking_until:
                self.retire(tenant)
            elif grant.pool and grant.pool[0][1] < now - POOL_IDLE_SECONDS:
                # The pool is used from its end, so its oldest leases are at the front.
                while grant.pool and grant.pool[0][1] < now - POOL_IDLE_SECONDS:
                    self._release(tenant, grant.pool.pop(0)[0])
        return bool(self.by_tenant)

    def forget(self) -> list[tuple[str, str]]:
        """Drop every reserve without telling Redis (it is away, so leases may lapse there): idle
        leases are never reused; (tenant, lease) of each is returned so the caller stops renewing it."""
        grants, self.by_tenant = self.by_tenant, {}
        return [(tenant, lease) for tenant, grant in grants.items() for lease, _ in grant.pool]

    def lost(self, tenant: str) -> list[str]:
        """Redis no longer holds some of the tenant's leases (it restarted or was flushed): its idle
        leases must not admit anyone, and its slice is no longer counted there."""
        grant = self.by_tenant.pop(tenant, None)
        return [] if grant is None else [lease for lease, _ in grant.pool]
