"""Per-tenant in-flight caps, bounded queues and weighted fair sharing of the upstream budget.

Start-time fair queuing over tenants: each grant advances the tenant's virtual time by
1/weight, and the waiting tenant with the smallest virtual time goes next; a tenant that was
idle re-enters at the current virtual time, so it cannot bank credit. A flooding tenant fills
only its own queue (then gets 429) and gets at most its weight's share when the budget is
contended, so it cannot raise another tenant's latency. Hand-written: no maintained asyncio
library implements weighted fair queuing across keys.

Token-fair (in the spirit of VTC, "Fairness in Serving Large Language Models", OSDI '24): a grant
advances virtual time by the request's cost in tokens (charged up front: the estimate the limits
use) divided by the weight, and `settle` corrects it by the tokens really served once the engine
reports usage. Equal weights then mean equal token shares, not equal request counts. Bound: while
two tenants are both backlogged, the tokens they are served, each divided by its weight, differ by
at most (C + 2) * L / w_min, where L is the largest request (tokens, estimated or served), C the
number of requests that can be in flight unsettled at once, and w_min the smaller weight: the one
with the lower virtual time is always served next (one request of slack), settling can move a
tenant by one request's error, and up to C granted requests are not yet counted as served.

Priorities within a tenant (`rank`: 0 critical, 1 standard, 2 sheddable) only reorder that
tenant's own queue: a critical request overtakes its tenant's other waiters, never another tenant.

Invariant: after every change, either the budget is spent or no tenant below its own cap is
waiting. So a request whose tenant is below its cap, with budget left, is granted at once:
waiters held back by their own tenant's cap never delay anyone else.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field


@dataclass
class _Tenant:
    weight: float
    cap: int
    max_queue: int
    inflight: int = 0
    vtime: float = 0.0
    waiters: deque = field(default_factory=deque)
    ranks: dict = field(default_factory=dict)  # waiting future -> rank, for waiters not standard


class QueueFull(Exception):
    pass


class FairScheduler:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.active = 0
        self.vclock = 0.0
        self.tenants: dict[str, _Tenant] = {}
        # Tenants with waiters: dispatch looks only at these, so a release costs nothing per idle tenant.
        self.backlog: dict[str, _Tenant] = {}

    def _tenant(self, name: str, weight: float, cap: int, max_queue: int) -> _Tenant:
        state = self.tenants.get(name)
        if state is None:
            state = self.tenants[name] = _Tenant(weight, cap, max_queue)
        elif (state.weight, state.cap, state.max_queue) != (weight, cap, max_queue):  # limits reloaded
            state.weight, state.cap, state.max_queue = weight, cap, max_queue
            self._dispatch()  # a raised cap may let waiters go
        return state

    def queued(self, name: str) -> int:
        state = self.tenants.get(name)
        return len(state.waiters) if state else 0

    def inflight(self, name: str) -> int:
        state = self.tenants.get(name)
        return state.inflight if state else 0

    def _can_start(self, state: _Tenant) -> bool:
        return state.inflight < state.cap and self.active < self.capacity and not state.waiters

    def has_room(self, name: str) -> bool:
        """False when a request of this tenant would be refused with QueueFull right now."""
        state = self.tenants.get(name)
        return state is None or self._can_start(state) or len(state.waiters) < state.max_queue

    def _grant(self, state: _Tenant, cost: float) -> None:
        state.vtime = max(state.vtime, self.vclock) + cost / state.weight
        state.inflight += 1
        self.active += 1

    def try_acquire(self, name: str, weight: float, cap: int, max_queue: int, cost: float = 1.0) -> bool:
        """Take a slot if one is free without waiting (the common case, with no coroutine to run)."""
        state = self._tenant(name, weight, cap, max_queue)
        if self._can_start(state):
            self._grant(state, cost)
            return True
        return False

    def settle(self, name: str, charged: float, served: float) -> None:
        """Correct a tenant's virtual time by what a finished request really cost (tokens served)."""
        state = self.tenants.get(name)
        if state is not None:
            state.vtime += (served - charged) / state.weight

    async def acquire(
        self, name: str, weight: float, cap: int, max_queue: int, cost: float = 1.0, rank: int = 1
    ) -> None:
        """Wait for a slot; raises QueueFull when the tenant's queue is full."""
        if self.try_acquire(name, weight, cap, max_queue, cost):
            return
        state = self.tenants[name]
        if len(state.waiters) >= state.max_queue:
            raise QueueFull(name)
        future = asyncio.get_running_loop().create_future()
        future.cost = cost  # type: ignore[attr-defined]
        if rank != 1 or state.ranks:
            self._enqueue_ranked(state, future, rank)
        else:
            state.waiters.append(future)
        self.backlog[name] = state
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(name)  # granted just as the client went away
            elif future in state.waiters:  # dispatch may already have dropped it
                state.waiters.remove(future)
                state.ranks.pop(future, None)
                if not state.waiters:
                    self.backlog.pop(name, None)
            raise

    def release(self, name: str) -> None:
        state = self.tenants[name]
        state.inflight -= 1
        self.active -= 1
        if self.backlog:
            self._dispatch()

    def _dispatch(self) -> None:
        while self.active < self.capacity:
            eligible = [(n, s) for n, s in self.backlog.items() if s.inflight < s.cap]
            if not eligible:
                return
            name, state = min(eligible, key=lambda item: max(item[1].vtime, self.vclock))
            future = state.waiters.popleft()
            if state.ranks:
                state.ranks.pop(future, None)
            if not state.waiters:
                del self.backlog[name]
            if future.cancelled():
                continue
            self.vclock = max(self.vclock, state.vtime)
            self._grant(state, future.cost)
            future.set_result(None)

    @staticmethod
    def _enqueue_ranked(state: _Tenant, future, rank: int) -> None:
        """Behind the tenant's waiters of the same or a more urgent rank, ahead of the less urgent ones."""
        state.ranks[future] = rank
        for position, waiting in enumerate(state.waiters):
            if state.ranks.get(waiting, 1) > rank:
                state.waiters.insert(position, future)
                return
        state.waiters.append(future)
