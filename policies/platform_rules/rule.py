"""How a rule is declared: `@rule(...)` beside its code, collected in import order.

A stack rule is `fn(resources, config) -> (resource, message)...`; a resource rule is
`fn(resource, config) -> message...`. Either way `config` is the PolicyConfig the framework
resolved once (thresholds tightened by the stack, capacity bounded by the GPU pool): no rule reads
the stack's settings itself. Resource rules see the pack's configuration only, since CrossGuard
shows them one resource at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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


def checked(rule: Rule, subject: Any, config: Any) -> Iterator[Any]:
    """The rule's findings; a rule that cannot read its input fails closed, as a finding, never a crash.

    The program renders well-formed resources, but the pack also runs on whatever a stack or another
    program hands it: a value of the wrong shape must stop the deployment, not skip the check.
    """
    try:
        yield from list(rule.fn(subject, config))
    except Exception as exc:  # any failure to evaluate is a violation
        message = (
            f"rule {rule.name!r} could not evaluate "
            f"{'the stack' if rule.scope == 'stack' else subject.display} ({type(exc).__name__}: {exc}); "
            "a resource has a value of an unexpected shape"
        )
        yield ("the stack", message) if rule.scope == "stack" else message


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
