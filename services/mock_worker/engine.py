"""Slot scheduler that makes requests queue and take time the way a batched engine does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .metrics import EngineMetrics
from .prefix_cache import PrefixCache


@dataclass(frozen=True)
class Generation:
    """What one request will produce: its model, prompt size and output tokens."""

    model: str
    prompt_tokens: int
    tokens: list[str]
    finish_reason: str = "length"
    # Chained hashes of the prompt's full blocks (prefix_cache.block_hashes); empty: nothing to reuse.
    prompt_blocks: tuple[int, ...] = ()

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)


class SlotEngine:
    """A fixed number of slots (the batch size); everything else waits for one.

    `waiting` counts requests queued for a slot and `running` those holding one,
    which is what vLLM's num_requests_waiting / num_requests_running report.

    Prefill takes `prefill_seconds` plus `prefill_seconds_per_token` for each prompt token the
    prefix cache does not hold. Prefill is compute-bound on a GPU, so a real engine does not run
    many prefills side by side for free: `prefill_concurrency` (0: unlimited) makes them queue for
    the compute, which is what makes uncached long prompts raise everyone's time to first token.
    """

    def __init__(
        self,
        *,
        models: list[str],
        slots: int,
        prefill_seconds: float,
        decode_seconds_per_token: float,
        metrics: EngineMetrics,
        prefill_seconds_per_token: float = 0.0,
        prefill_concurrency: int = 0,
        cache: PrefixCache | None = None,
        stream_interval: int = 1,
    ) -> None:
        self._stream_interval = stream_interval
        self._slots = asyncio.Semaphore(slots)
        self._prefill = prefill_seconds
        self._prefill_per_token = prefill_seconds_per_token
        self._compute = asyncio.Semaphore(prefill_concurrency) if prefill_concurrency else None
        self._decode = decode_seconds_per_token
        self._metrics = metrics
        self.cache = cache
        self.waiting = dict.fromkeys(models, 0)
        self.running = dict.fromkeys(models, 0)
        for model in models:
            metrics.bind_queue(model, lambda m=model: self.waiting[m], lambda m=model: self.running[m])
        if cache is not None:
            metrics.bind_cache(models, cache.usage)

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

    async def _prefill_phase(self, gen: Generation) -> None:
        """Look the prompt up in the prefix cache, spend the prefill time of the rest, cache its blocks."""
        cache = self.cache
        cached = 0
        if cache is not None:
            cached = cache.lookup(gen.prompt_blocks, gen.prompt_tokens)
            self._metrics.count_prefix(gen.model, gen.prompt_tokens, cached)
        seconds = self._prefill + self._prefill_per_token * (gen.prompt_tokens - cached)
        if seconds:
            if self._compute is None:
                await asyncio.sleep(seconds)
            else:
                async with self._compute:
                    await asyncio.sleep(seconds)
        if cache is not None:
            cache.insert(gen.prompt_blocks)

    def _hold(self, gen: Generation) -> tuple[int, int]:
        # The whole sequence's KV is reserved at once: a simplification of vLLM's block-by-block growth.
        tokens = gen.prompt_tokens + gen.completion_tokens
        if self.cache is None:
            return tokens, 0
        private = tokens - len(gen.prompt_blocks) * self.cache.block_size
        self.cache.hold(tokens, private)
        return tokens, private

    def _free(self, held: tuple[int, int]) -> None:
        if self.cache is not None:
            self.cache.free(*held)

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
        held = self._hold(gen)
        first_token_at = None
        finished = False
        try:
            self._metrics.per_model[gen.model].prompt_tokens.inc(gen.prompt_tokens)
            # One sleep per phase rather than per token: same timing, far fewer wake-ups.
            await self._prefill_phase(gen)
            if self._decode:
                await asyncio.sleep(self._decode)
            first_token_at = time.perf_counter()
            rest = self._decode * (gen.completion_tokens - 1)
            if rest > 0:
                await asyncio.sleep(rest)
            finished = True
        finally:
            self._free(held)
            self._release(gen.model)
            self._record(gen, started, first_token_at, gen.completion_tokens if finished else 0, finished)

    async def stream(self, gen: Generation) -> AsyncIterator[str]:
        """Yield tokens as they are decoded; a client that disconnects frees its slot."""
        started = time.perf_counter()
        await self._acquire(gen.model)
        held = self._hold(gen)
        first_token_at = None
        generated = 0
        try:
            self._metrics.per_model[gen.model].prompt_tokens.inc(gen.prompt_tokens)
            await self._prefill_phase(gen)
            # The first token as soon as it is decoded, then `stream_interval` tokens per chunk
            # (vLLM's --stream-interval): fewer wake-ups and writes for the same timing.
            step = 1
            while generated < gen.completion_tokens:
                if self._decode:
                    await asyncio.sleep(self._decode * step)
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                piece = "".join(gen.tokens[generated : generated + step])
                generated += len(gen.tokens[generated : generated + step])
                yield piece
                step = self._stream_interval
        finally:
            self._free(held)
            self._release(gen.model)
            self._record(gen, started, first_token_at, generated, generated == gen.completion_tokens)
