"""The two workloads and an open-loop load generator that measures time to first token.

shared: multi-turn sessions over a few long system prompts (chat assistants, agents): each request
is its session's system prompt, the user turns so far and a new one. none: every prompt is new.
Arrivals are Poisson at a fixed rate whatever the answers' latency (open loop), from a fixed seed,
so every target gets the same requests at the same moments.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import aiohttp
import orjson

VOCABULARY = [f"w{i}" for i in range(5000)]


@dataclass(frozen=True)
class Planned:
    at: float  # seconds after the start
    session: str
    messages: list[dict]


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choices(VOCABULARY, k=count))


def shared_prefix(
    rate: float, seconds: float, seed: int = 1, prompts: int = 8, prompt_tokens: int = 2000,
    sessions: int = 64, turn_tokens: int = 60, max_turns: int = 8,
) -> list[Planned]:  # fmt: skip
    rng = random.Random(seed)
    systems = [words(rng, prompt_tokens) for _ in range(prompts)]
    history: dict[int, list[str]] = {s: [] for s in range(sessions)}
    plan, at = [], 0.0
    while True:
        at += rng.expovariate(rate)
        if at >= seconds:
            return plan
        s = rng.randrange(sessions)
        if len(history[s]) >= max_turns:
            history[s] = []  # the conversation ends; a new one starts in the same session slot
        history[s].append(words(rng, turn_tokens))
        messages = [{"role": "system", "content": systems[s % prompts]}]
        messages += [{"role": "user", "content": turn} for turn in history[s]]
        plan.append(Planned(at, f"session-{s}", messages))


def no_sharing(rate: float, seconds: float, seed: int = 2, prompt_tokens: int = 1000) -> list[Planned]:
    rng = random.Random(seed)
    plan, at = [], 0.0
    while True:
        at += rng.expovariate(rate)
        if at >= seconds:
            return plan
        plan.append(Planned(at, f"one-off-{len(plan)}", [{"role": "user", "content": words(rng, prompt_tokens)}]))


@dataclass
class Result:
    ttft: float | None
    e2e: float | None
    tokens: int
    status: int


async def one(session: aiohttp.ClientSession, url: str, key: str, item: Planned, max_tokens: int) -> Result:
    body = {"model": "bench-model", "messages": item.messages, "max_tokens": max_tokens, "stream": True}
    headers = {"content-type": "application/json", "x-session-id": item.session}
    if key:
        headers["authorization"] = f"Bearer {key}"
    started = time.perf_counter()
    ttft = None
    tokens = 0
    try:
        async with session.post(f"{url}/v1/chat/completions", data=orjson.dumps(body), headers=headers) as response:
            if response.status != 200:
                await response.read()
                return Result(None, None, 0, response.status)
            async for line in response.content:
                if not line.startswith(b"data: {"):
                    continue
                if b'"content":"' in line and b'"content":""' not in line:
                    if ttft is None:
                        ttft = time.perf_counter() - started
                    tokens += 1
        return Result(ttft, time.perf_counter() - started, tokens, 200)
    except (TimeoutError, aiohttp.ClientError):
        return Result(None, None, 0, 599)


async def run_open_loop(url: str, key: str, plan: list[Planned], max_tokens: int) -> tuple[list[Result], float]:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        tasks = []
        for item in plan:
            delay = item.at - (time.perf_counter() - started)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, url, key, item, max_tokens)))
        results = await asyncio.gather(*tasks)
        return results, time.perf_counter() - started
