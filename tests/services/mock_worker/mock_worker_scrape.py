"""Reading the worker's /metrics in tests (a uniquely named module: `conftest` is ambiguous
when several test folders have one)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

MODELS = ("mock-llama", "mock-mistral")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    """{(sample name, labels): value} for every sample in a Prometheus text exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} missing from /metrics; have {sorted({n for n, _ in samples})}"
    return samples[key]
