"""The sliding window's shape, shared by the Redis script and its in-process copy.

A minute's count plus the previous minute's, weighted by how much of it still overlaps the window;
`window_keys` names the four counters, `Decision` is what a check answers, `Admission` what an
admitted request holds until it finishes, and `LocalWindow` the same window in-process for when
Redis is away.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

WINDOW_MS = 60_000


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str  # "", "requests", "tokens" or "queue"
    remaining_requests: int
    remaining_tokens: int
    reset_seconds: float


@dataclass(slots=True)
class Admission:
    """An admitted request's hold on the shared limits, until finish()."""

    tenant: str
    cost: int
    bucket: int  # the minute its counts were charged to
    lease: str = ""  # its slot or queue place in Redis; "" when limits were local or absent
    holding: bool = True  # False while queued for a slot
    shared: bool = False  # counted in Redis (else in-process, or not at all)


ALLOW = Decision(True, "", -1, -1, 0.0)


@functools.lru_cache(maxsize=4096)  # built on every call otherwise: twice per request
def window_keys(tenant: str, bucket: int) -> tuple[str, str, str, str]:
    # The hash tag keeps a tenant's keys in one Redis Cluster slot.
    return (
        f"rl:{{{tenant}}}:r:{bucket}",
        f"rl:{{{tenant}}}:r:{bucket - 1}",
        f"rl:{{{tenant}}}:t:{bucket}",
        f"rl:{{{tenant}}}:t:{bucket - 1}",
    )


class LocalWindow:
    """The script's window in-process, for when Redis is away."""

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}

    def check(self, tenant: str, now_ms: int, rpm: int, tpm: int, cost: int) -> list[float]:
        bucket = now_ms // WINDOW_MS
        rc, rp, tc, tp = window_keys(tenant, bucket)
        weight = 1 - (now_ms % WINDOW_MS) / WINDOW_MS
        reset = WINDOW_MS - now_ms % WINDOW_MS
        requests = self.counts.get(rp, 0) * weight + self.counts.get(rc, 0)
        tokens = self.counts.get(tp, 0) * weight + self.counts.get(tc, 0)
        if rpm >= 0 and requests + 1 > rpm:
            return [0, 1, 0, max(tpm - tokens, 0), reset, 0]
        if tpm >= 0 and tokens + cost > tpm:
            return [0, 2, max(rpm - requests, 0), 0, reset, 0]
        self.counts[rc] = self.counts.get(rc, 0) + 1
        self.counts[tc] = self.counts.get(tc, 0) + cost
        if len(self.counts) > 100_000:  # drop buckets older than the window
            self.counts = {k: v for k, v in self.counts.items() if int(k.rsplit(":", 1)[1]) >= bucket - 1}
        return [1, 0, max(rpm - requests - 1, 0), max(tpm - tokens - cost, 0), reset, 0]

    def adjust(self, tenant: str, bucket: int, requests: int, tokens: int) -> None:
        rc, _, tc, _ = window_keys(tenant, bucket)
        for key, delta in ((rc, requests), (tc, tokens)):
            if delta and key in self.counts:
                self.counts[key] = max(self.counts[key] + delta, 0)
