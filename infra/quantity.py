"""Kubernetes quantities: parsed by the policy pack's parser (one implementation), formatted here."""

from __future__ import annotations

from decimal import Decimal

from policies.platform_rules.quantity import BINARY_UNITS as _BINARY
from policies.platform_rules.quantity import parse_quantity

__all__ = ["format_bytes", "format_cpu", "parse_quantity"]


def format_cpu(cores: Decimal) -> str:
    """Render cores the way kubectl does: whole cores plainly, fractions in millicores."""
    if cores == cores.to_integral_value():
        return str(int(cores))
    return f"{int((cores * 1000).to_integral_value())}m"


def format_bytes(amount: Decimal) -> str:
    """Render bytes with the largest binary suffix that divides them exactly."""
    whole = int(amount)
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if whole and whole % unit == 0:
            return f"{whole // unit}{suffix}"
    return str(whole)
