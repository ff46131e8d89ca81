"""Slot scheduler that makes requests queue and take time the way a batched engine does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .metrics import EngineMetrics


@dataclass(frozen=True)
class Generation:
    """What one request will produce: its model, prompt size and output tokens."""

    model: str
    prompt_tokens: int
    tokens: list[str]
    finish_reason: str = "length"

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)


class SlotEngine:
    """A fixed number of slots (the batch size); everything else waits for one.

    `waiting` counts requests queued for a slot and `running` those holding one,
    which is what vLLM's num_requests_waiting / num_requests_running report.
    """

    def __init__(
        self,
        *,
        models: list[str],
        slots: int,
        prefill_seconds: float,
        decode_seconds_per_token: float,
        metrics: EngineMetrics,
    ) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._prefill = prefill_seconds
        self._decode = decode_seconds_per_token
        self._metrics = metrics
        self.waiting = dict.fromkeys(models, 0)
        self.running = dict.fromkeys(models, 0)
        for model in models:
            metrics.bind_queue(model, lambda m=model: self.waiting[m], lambda m=model: self.running[m])

    async def _acquire(self, model: str) -> None:
        self.waiting[model] += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting[model] -= 1
        self.running[model] += 1

    def _release(self, model: str) -> None:
        self.running[model] -= 1
        self._slots.release()

    def _record(
        self, gen: Generation, started: float, first_token_at: float | None, generated: int, finished: bool
    ) -> None:
        m = self._metrics.per_model[gen.model]
        if first_token_at is not None:
            m.time_to_first_token.observe(first_token_at - started)
        if generated:
            m.generation_tokens.inc(generated)
        if finished:
            m.e2e_latency.observe(time.perf_counter() - started)
        success = m.request_success.get(gen.finish_reason if finished else "abort")
        if success is not None:
            success.inc()

    async def run(self, gen: Generation) -> None:
        """Occupy a slot for the whole generation (non-streaming requests)."""
        started = time.perf_counter()
        await self._acquire(gen.model)
        first_token_at = None
        finished = False
        try:
            self._metrics.per_model[gen.model].prompt_tokens.inc(gen.prompt_tokens)
            # One sleep per phase rather than per token: same timing, far fewer wake-ups.
            first = self._prefill + self._decode
            if first:
                await asyncio.sleep(first)
            first_token_at = time.perf_counter()
            rest = self._decode * (gen.completion_tokens - 1)
            if rest > 0:
                await asyncio.sleep(rest)
            finished = True
        finally:
            self._release(gen.model)
            self._record(gen, started, first_token_at, gen.completion_tokens if finished else 0, finished)

    async def stream(self, gen: Generation) -> AsyncIterator[str]:
        """Yield tokens as they are decoded; a client that disconnects frees its slot."""
        started = time.perf_counter()
        await self._acquire(gen.model)
        first_token_at = None
        generated = 0
        try:
            self._metrics.per_model[gen.model].prompt_tokens.inc(gen.prompt_tokens)
            if self._prefill:
                await asyncio.sleep(self._prefill)
            for token in gen.tokens:
                if self._decode:
                    await asyncio.sleep(self._decode)
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                generated += 1
                yield token
        finally:
            self._release(gen.model)
            self._record(gen, started, first_token_at, generated, generated == gen.completion_tokens)
