"""Deterministic stand-in for a model: prompt token estimates and generated tokens."""

from __future__ import annotations

import zlib

# A fixed vocabulary keeps output readable and cheap to produce; one word = one token.
_VOCABULARY = (
    "the",
    "platform",
    "serves",
    "tokens",
    "for",
    "every",
    "tenant",
    "while",
    "queues",
    "stay",
    "short",
    "and",
    "fair",
    "a",
    "mock",
    "engine",
    "answers",
    "quickly",
    "with",
    "plausible",
    "text",
    "so",
    "that",
    "gateways",
    "autoscalers",
    "dashboards",
    "can",
    "be",
    "tested",
    "without",
    "any",
    "GPU",
    "at",
    "all",
    "batch",
    "slots",
    "decode",
    "prefill",
    "latency",
    "throughput",
    "model",
    "request",
    "stream",
    "usage",
    "metric",
    "quota",
    "pool",
    "worker",
    "route",
    "capacity",
    "cluster",
    "node",
    "pod",
    "scale",
    "load",
    "burst",
    "limit",
    "share",
    "priority",
    "canary",
    "healthy",
    "ready",
    "done",
)
# Coprime with the vocabulary size, so consecutive tokens walk the whole vocabulary.
_STRIDE = 7


def estimate_prompt_tokens(prompt: str) -> int:
    """One token per whitespace-separated word (at least one), the same unit as the output."""
    return max(1, len(prompt.split()))


def generate_tokens(prompt: str, count: int, seed: int | None) -> list[str]:
    """`count` tokens chosen by the prompt (and seed): same input, same output."""
    offset = zlib.crc32(prompt.encode("utf-8", "surrogatepass")) + (seed or 0) * 31
    size = len(_VOCABULARY)
    tokens = [_VOCABULARY[(offset + i * _STRIDE) % size] for i in range(count)]
    return [tokens[0], *(" " + word for word in tokens[1:])] if tokens else []
