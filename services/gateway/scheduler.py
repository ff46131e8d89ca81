"""Per-tenant in-flight caps, bounded queues and weighted fair sharing of the upstream budget.

Start-time fair queuing over tenants: each grant advances the tenant's virtual time by
1/weight, and the waiting tenant with the smallest virtual time goes next; a tenant that was
idle re-enters at the current virtual time, so it cannot bank credit. A flooding tenant fills
only its own queue (then gets 429) and gets at most its weight's share when the budget is
contended, so it cannot raise another tenant's latency. Hand-written: no maintained asyncio
library implements weighted fair queuing across keys.
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


class QueueFull(Exception):
    pass


class FairScheduler:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.active = 0
        self.vclock = 0.0
        self.tenants: dict[str, _Tenant] = {}

    def _tenant(self, name: str, weight: float, cap: int, max_queue: int) -> _Tenant:
        state = self.tenants.get(name)
        if state is None:
            state = self.tenants[name] = _Tenant(weight, cap, max_queue)
        else:  # limits may change on reload
            state.weight, state.cap, state.max_queue = weight, cap, max_queue
        return state

    def queued(self, name: str) -> int:
        state = self.tenants.get(name)
        return len(state.waiters) if state else 0

    def inflight(self, name: str) -> int:
        state = self.tenants.get(name)
        return state.inflight if state else 0

    def _grant(self, state: _Tenant) -> None:
        state.vtime = max(state.vtime, self.vclock) + 1.0 / state.weight
        state.inflight += 1
        self.active += 1

    def _anyone_waiting(self) -> bool:
        return any(s.waiters for s in self.tenants.values())

    async def acquire(self, name: str, weight: float, cap: int, max_queue: int) -> None:
        """Wait for a slot; raises QueueFull when the tenant's queue is full."""
        state = self._tenant(name, weight, cap, max_queue)
        if state.inflight < state.cap and self.active < self.capacity and not self._anyone_waiting():
            self._grant(state)
            return
        if len(state.waiters) >= state.max_queue:
            raise QueueFull(name)
        future = asyncio.get_running_loop().create_future()
        state.waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(name)  # granted just as the client went away
            else:
                state.waiters.remove(future)
            raise

    def release(self, name: str) -> None:
        state = self.tenants[name]
        state.inflight -= 1
        self.active -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        while self.active < self.capacity:
            eligible = [s for s in self.tenants.values() if s.waiters and s.inflight < s.cap]
            if not eligible:
                return
            state = min(eligible, key=lambda s: max(s.vtime, self.vclock))
            future = state.waiters.popleft()
            if future.cancelled():
                continue
            self.vclock = max(self.vclock, state.vtime)
            self._grant(state)
            future.set_result(None)
