"""Kubernetes resource quantities ("500m", "2Gi", 4) as exact decimals.

The one parser of the project: the policy pack must run in its own virtual environment
without the program, so the program imports it from here. Hand-written on purpose: the only
maintained parser (kubernetes.utils.parse_quantity) would pull in the whole Kubernetes client.
"""

from __future__ import annotations

import re
from decimal import Decimal

# Suffix -> multiplier, as Kubernetes spells them (the program formats with the same table).
BINARY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
DECIMAL_UNITS = {
    "n": "1e-9",
    "u": "1e-6",
    "m": "1e-3",
    "": "1",
    "k": "1e3",
    "M": "1e6",
    "G": "1e9",
    "T": "1e12",
    "P": "1e15",
    "E": "1e18",
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$")


def parse_quantity(value: str | int | float | Decimal) -> Decimal:
    """The quantity in base units (cores, bytes, devices); ValueError names the bad input."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    if isinstance(value, (int, Decimal)):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        number = None
    if number is not None:
        # NaN and infinity compare as errors (or never), so they would switch a check off.
        if not number.is_finite():
            raise ValueError(f"{value!r} is not a Kubernetes quantity")
        return number
    match = _QUANTITY.match(value.strip())
    if not match:
        raise ValueError(f'{value!r} is not a Kubernetes quantity (examples: "500m", "2", "16Gi")')
    suffix = match.group(2) or ""
    return Decimal(match.group(1)) * (
        BINARY_UNITS[suffix] if suffix in BINARY_UNITS else Decimal(DECIMAL_UNITS[suffix])
    )
