"""How a rule is declared: `@rule(...)` beside its code, collected in import order.

A stack rule is `fn(resources, config) -> (resource, message)...`; a resource rule is
`fn(resource, config) -> message...`. Either way `config` is the PolicyConfig the framework
resolved once (thresholds tightened by the stack, capacity bounded by the GPU pool): no rule reads
the stack's settings itself. Resource rules see the pack's configuration only, since CrossGuard
shows them one resource at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .model import Level

Severity = Literal["low", "medium", "high", "critical"]
Scope = Literal["stack", "resource"]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    level: Level
    severity: Severity
    scope: Scope
    fn: Callable[..., Iterable[Any]]


RULES: list[Rule] = []


def rule(
    *, name: str, description: str, level: Level, severity: Severity, scope: Scope = "stack"
) -> Callable[[Callable[..., Iterable[Any]]], Callable[..., Iterable[Any]]]:
    """Register the decorated function as a rule; the function itself is returned unchanged."""

    def register(fn: Callable[..., Iterable[Any]]) -> Callable[..., Iterable[Any]]:
        if any(existing.name == name for existing in RULES):
            raise ValueError(f"policy rule {name!r} is registered twice")
        RULES.append(Rule(name=name, description=description, level=level, severity=severity, scope=scope, fn=fn))
        return fn

    return register
