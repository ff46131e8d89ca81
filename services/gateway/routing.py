"""Choosing an upstream per tenant model: direct, weighted or canary; sticky by request id; circuit breakers."""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass

from services.gateway.config import Route


def _fraction(request_id: str | None) -> float:
    """A number in [0, 1): the same for the same request id (sticky), random otherwise."""
    if not request_id:
        return random.random()
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def candidates(route: Route, request_id: str | None) -> list[str]:
    """Upstream names in the order to try them: the chosen one, then the fallbacks."""
    point = _fraction(request_id)
    if route.strategy == "direct":
        return [route.primary]
    if route.strategy == "canary":
        first, second = (route.canary, route.primary) if point * 100 < route.percent else (route.primary, route.canary)
        return [first, second]
    total = sum(route.weights.values())
    cursor, chosen = 0.0, None
    for name, weight in route.weights.items():
        cursor += weight / total if total else 1.0 / len(route.weights)
        if point < cursor:
            chosen = name
            break
    chosen = chosen or list(route.weights)[-1]
    return [chosen] + sorted((n for n in route.weights if n != chosen), key=lambda n: -route.weights[n])


@dataclass
class _Breaker:
    failures: int = 0
    open_until: float = 0.0


class CircuitBreakers:
    """Per upstream URL: after N consecutive failures before the first byte, skip it for a while."""

    def __init__(self, failures: int, open_seconds: float):
        self.threshold, self.open_seconds = failures, open_seconds
        self.state: dict[str, _Breaker] = {}

    def is_open(self, url: str) -> bool:
        breaker = self.state.get(url)
        return breaker is not None and breaker.open_until > time.monotonic()

    def failed(self, url: str) -> None:
        breaker = self.state.setdefault(url, _Breaker())
        breaker.failures += 1
        if breaker.failures >= self.threshold:
            breaker.open_until = time.monotonic() + self.open_seconds

    def succeeded(self, url: str) -> None:
        breaker = self.state.get(url)
        if breaker is not None:
            breaker.failures, breaker.open_until = 0, 0.0

    def order(self, choices: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """(name, URL) pairs, closed breakers first; an open one is still tried last rather than failing outright."""
        if not self.state:
            return choices
        return sorted(choices, key=lambda choice: self.is_open(choice[1]))
