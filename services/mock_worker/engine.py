"""Slots, prefill and decode: enough of an engine's timing that requests really queue."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.mock_worker.metrics import EngineMetrics
from services.mock_worker.settings import WorkerSettings

WORDS = "the quick brown fox jumps over the lazy dog while a mock engine decodes tokens".split()


class EngineFailure(Exception):
    """The configured failure rate struck."""


@dataclass
class Generation:
    prompt_tokens: int
    completion_tokens: int = 0
    finish_reason: str = "length"


def count_prompt_tokens(text: str) -> int:
    # Words as tokens: real tokenizers give ~1.3 tokens a word; the mock only needs consistency.
    return max(1, len(text.split()))


class MockEngine:
    def __init__(self, settings: WorkerSettings, metrics: EngineMetrics):
        self.settings = settings
        self.metrics = metrics
        self.slots = asyncio.Semaphore(settings.slots)
        self.random = random.Random(settings.seed)

    async def generate(self, model: str, prompt: str, max_tokens: int) -> AsyncIterator[tuple[str, Generation]]:
        """Yield (token text, running totals); raises EngineFailure before the first token."""
        settings, metrics = self.settings, self.metrics
        started = time.perf_counter()
        generation = Generation(prompt_tokens=count_prompt_tokens(prompt))
        waiting, running = metrics.waiting.labels(model), metrics.running.labels(model)
        waiting.inc()
        try:
            await self.slots.acquire()
        finally:
            waiting.dec()
        running.inc()
        try:
            if settings.failure_rate and self.random.random() < settings.failure_rate:
                raise EngineFailure("simulated engine failure")
            if settings.prefill_seconds:
                await asyncio.sleep(settings.prefill_seconds)
            metrics.prompt_tokens.labels(model).inc(generation.prompt_tokens)
            for index in range(max_tokens):
                if index == 0:
                    metrics.ttft.labels(model).observe(time.perf_counter() - started)
                elif settings.decode_seconds_per_token:
                    await asyncio.sleep(settings.decode_seconds_per_token)
                generation.completion_tokens += 1
                metrics.generation_tokens.labels(model).inc()
                yield WORDS[index % len(WORDS)] + " ", generation
            metrics.success.labels(model).inc()
            metrics.e2e.labels(model).observe(time.perf_counter() - started)
        finally:
            running.dec()
            self.slots.release()
