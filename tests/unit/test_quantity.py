from decimal import Decimal

import pytest

from infra.quantity import format_bytes, format_cpu, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1.5", Decimal("1.5")),
        ("2Gi", Decimal(2 * 1024**3)),
        ("512Mi", Decimal(512 * 1024**2)),
        ("1k", Decimal(1000)),
        ("1e3", Decimal(1000)),
        (4, Decimal(4)),
        (0.25, Decimal("0.25")),
    ],
)
def test_parses_kubernetes_quantities(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["2Gx", "", "Gi", "1.2.3", "ten", True, None, "--1"])
def test_rejects_malformed_quantities(text):
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_formats_round_trip():
    assert format_cpu(Decimal("0.5")) == "500m"
    assert format_cpu(Decimal(12)) == "12"
    assert format_bytes(parse_quantity("24Gi")) == "24Gi"
    assert format_bytes(parse_quantity("1536Mi")) == "1536Mi"
    assert format_bytes(Decimal(1000)) == "1000"
