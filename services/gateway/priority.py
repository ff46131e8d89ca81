"""A request's priority within its tenant: header `x-priority: critical | standard | sheddable`.

Critical requests overtake their own tenant's queued requests (never another tenant's: the fair
queue's shares do not change); sheddable ones are refused with 429 and Retry-After while every pod
of the worker reports a long engine queue or a full KV cache (picker.Picker.saturated), so the
engines' headroom goes to the requests that cannot wait. Without the header a request is standard.
"""

from __future__ import annotations

CRITICAL, STANDARD, SHEDDABLE = 0, 1, 2
RANKS = {b"critical": CRITICAL, b"standard": STANDARD, b"sheddable": SHEDDABLE}


def priority_rank(headers: dict[bytes, bytes]) -> int | None:
    """The rank the header asks for (STANDARD without one); None for a value that is not a priority."""
    value = headers.get(b"x-priority")
    if value is None:
        return STANDARD
    return RANKS.get(value.strip().lower())
