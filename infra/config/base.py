"""Building blocks shared by the configuration models."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

from infra.quantity import parse_quantity

PROJECT = "gpu-platform"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Leaves room for "-staging" and similar suffixes inside Kubernetes' 63-character namespace limit.
MAX_TENANT_NAME = 40


def _non_negative_quantity(value: object) -> Decimal:
    amount = parse_quantity(value)  # type: ignore[arg-type]
    if amount < 0:
        raise ValueError("must be >= 0")
    return amount


Quantity = Annotated[Decimal, BeforeValidator(_non_negative_quantity), PlainSerializer(str)]
Count = Annotated[int, Field(ge=0)]


class Model(BaseModel):
    """Base for every config model: camelCase keys in YAML, no unknown keys, immutable."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, validate_default=True
    )


def dns_label(value: str, what: str, max_len: int = 63) -> str:
    if not DNS_LABEL.match(value) or len(value) > max_len:
        raise ValueError(
            f"{value!r} is not a valid {what}: use lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {max_len} characters"
        )
    return value
