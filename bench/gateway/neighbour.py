"""Noisy neighbour: tenant B at a steady rate while tenant A floods at 20x its limit.

B's latency is measured open-loop (requests start on a fixed schedule, whatever the responses
do) alone and beside A's flood, through the gateway and straight to the same kind of shared
worker (a mock with 4 slots, so an unprotected flood really queues everyone).
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from services.gateway.process import gateway, redis_server, write_config
from services.mock_worker.process import mock_worker

KEYS = {"a": "sk-neighbour-a", "b": "sk-neighbour-b"}
A_RPM = 300  # 5 requests/s
A_FLOOD_RPS = 20 * A_RPM / 60  # 100 requests/s
B_RPS = 10
BODY = {"model": "shared-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


async def _open_loop(session, url, key, rps, duration, results):
    async def one():
        started = time.perf_counter()
        try:
            async with session.post(
                url, json=BODY, headers={"Authorization": f"Bearer {key}"} if key else {}
            ) as response:
                await response.read()
                results.append((response.status, time.perf_counter() - started))
        except aiohttp.ClientError:
            results.append((0, time.perf_counter() - started))

    tasks, start = [], time.perf_counter()
    for i in range(int(rps * duration)):
        delay = start + i / rps - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)


async def _load(url, key, rps, duration):
    results = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        await _open_loop(session, url, key, rps, duration, results)
    return results


def _flood(url, duration, queue):
    queue.put(asyncio.run(_load(url, KEYS["a"], A_FLOOD_RPS, duration)))


async def _scenario(url, duration, flood):
    # A's flood comes from its own process, so B's measuring loop is not delayed by A's client work.
    a, queue, flooder = [], multiprocessing.Queue(), None
    if flood:
        flooder = multiprocessing.Process(target=_flood, args=(url, duration, queue))
        flooder.start()
    b = await _load(url, KEYS["b"], B_RPS, duration)
    if flooder:
        a = queue.get(timeout=120)
        flooder.join()
    ok = [seconds for status, seconds in b if status == 200]
    p99 = statistics.quantiles(ok, n=100)[98] * 1000 if len(ok) > 1 else float("nan")
    return {
        "b_sent": len(b),
        "b_refused": sum(status != 200 for status, _ in b),
        "b_p50_ms": round(statistics.median(ok) * 1000, 1) if ok else None,
        "b_p99_ms": round(p99, 1),
        "a_sent": len(a),
        "a_accepted": sum(status == 200 for status, _ in a),
    }


def noisy_neighbour(duration: int = 10) -> dict:
    worker_args = (
        "--model",
        "shared-model",
        "--slots",
        "4",
        "--prefill-seconds",
        "0.01",
        "--decode-seconds-per-token",
        "0.005",
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp, redis_server() as redis:
        with mock_worker(*worker_args) as shared:
            limits = {
                "a": {"rpm": A_RPM, "tpm": 10_000_000, "maxConcurrency": 2, "maxQueue": 4},
                "b": {"rpm": 6000, "tpm": 10_000_000, "maxConcurrency": 8, "maxQueue": 32},
            }
            document = {
                "tenants": {
                    name: {
                        "tier": "silver",
                        "weight": 1,
                        "keyHashes": [hashlib.sha256(KEYS[name].encode()).hexdigest()],
                        "models": ["shared-model"],
                        "limits": limits[name],
                        "upstreams": {"shared": shared.url},
                        "routes": {"shared-model": {"strategy": "direct", "primary": "shared"}},
                    }
                    for name in ("a", "b")
                }
            }
            with gateway(write_config(document, Path(tmp)), redis.url, log_level="WARNING") as gw:
                url = f"{gw.url}/v1/chat/completions"
                results["gateway_b_solo"] = asyncio.run(_scenario(url, duration, flood=False))
                results["gateway_b_with_a_flooding"] = asyncio.run(_scenario(url, duration, flood=True))
        with mock_worker(*worker_args) as shared:
            url = f"{shared.url}/v1/chat/completions"
            results["direct_b_solo"] = asyncio.run(_scenario(url, duration, flood=False))
            results["direct_b_with_a_flooding"] = asyncio.run(_scenario(url, duration, flood=True))
    gw_ratio = results["gateway_b_with_a_flooding"]["b_p99_ms"] / results["gateway_b_solo"]["b_p99_ms"]
    direct_ratio = results["direct_b_with_a_flooding"]["b_p99_ms"] / results["direct_b_solo"]["b_p99_ms"]
    results["b_p99_ratio_through_gateway"] = round(gw_ratio, 2)
    results["b_p99_ratio_direct"] = round(direct_ratio, 2)
    return results
