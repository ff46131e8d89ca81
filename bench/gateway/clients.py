"""Cost per call of the gateway's two clients against the libraries they replace.

Same process, same run: POSTs to one mock worker (zero prefill and decode) through aiohttp and
through services/gateway/upstream_client.py; the rate-limit script through redis-py's asyncio
pipeline and through services/gateway/redis_client.py. Reported: wall time and this process's CPU
time per call, at 1 and 16 concurrent callers (uvloop, as in the gateway).

    .venv/bin/python bench/gateway/clients.py [--calls 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
import uvloop  # noqa: E402

from services.gateway.limit_scripts import SCRIPTS  # noqa: E402
from services.gateway.limit_window import WINDOW_MS  # noqa: E402
from services.gateway.process import redis_server  # noqa: E402
from services.gateway.redis_client import RedisClient  # noqa: E402
from services.gateway.upstream_client import UpstreamClient  # noqa: E402
from services.mock_worker.process import mock_worker  # noqa: E402

BODY = b'{"model":"bench-model","messages":[{"role":"user","content":"hello"}],"max_tokens":1}'
PATH = "/v1/chat/completions"
HEADERS = [(b"content-type", b"application/json")]
KEYS = ("rl:{bench}:r:1", "rl:{bench}:r:0", "rl:{bench}:t:1", "rl:{bench}:t:0", "rl:{bench}:slots", "rl:{bench}:queue")
# The gateway's own admission script, exactly as it runs (with no concurrency cap: the rate check alone).
_SCRIPT, _SHA = SCRIPTS["admit"]


async def timed(one, calls: int, callers: int) -> dict:
    async def caller(n):
        for _ in range(n):
            await one()

    await asyncio.gather(*(caller(50) for _ in range(callers)))  # warm-up: connections, caches
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(caller(calls // callers) for _ in range(callers)))
    return {
        "wall_us": round((time.perf_counter() - wall) / calls * 1e6, 1),
        "cpu_us": round((time.process_time() - cpu) / calls * 1e6, 1),
    }


def script_args() -> tuple:
    return (int(time.time() * 1000), WINDOW_MS, 10**9, 10**12, 5, 0, 0, 15_000, "lease")


async def upstream_rows(url: str, calls: int, callers: int) -> list[dict]:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), auto_decompress=False, skip_auto_headers=("User-Agent",)
    ) as session:

        async def via_aiohttp():
            async with session.post(url + PATH, data=BODY, headers={"Content-Type": "application/json"}) as r:
                await r.read()

        baseline = await timed(via_aiohttp, calls, callers)
    client = UpstreamClient(2, 30)

    async def via_client():
        response = await client.post(url, PATH, BODY, HEADERS)
        await response.read()
        response.release()

    ours = await timed(via_client, calls, callers)
    client.close()
    return [
        {"what": "upstream POST", "client": "aiohttp 3.14", "callers": callers, **baseline},
        {"what": "upstream POST", "client": "upstream_client.py", "callers": callers, **ours},
    ]


async def redis_rows(url: str, calls: int, callers: int) -> list[dict]:
    redis_py = aioredis.from_url(url)
    await redis_py.script_load(_SCRIPT)

    async def via_redis_py():
        async with redis_py.pipeline(transaction=False) as pipe:
            pipe.evalsha(_SHA, len(KEYS), *KEYS, *script_args())
            await pipe.execute()

    baseline = await timed(via_redis_py, calls, callers)
    await redis_py.aclose()
    client = RedisClient(url, 1)

    async def via_client():
        await client.call("EVALSHA", _SHA, len(KEYS), *KEYS, *script_args())

    ours = await timed(via_client, calls, callers)
    await client.close()
    return [
        {"what": "rate-limit EVALSHA", "client": "redis-py 8.1 pipeline", "callers": callers, **baseline},
        {"what": "rate-limit EVALSHA", "client": "redis_client.py", "callers": callers, **ours},
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=4000)
    args = parser.parse_args()
    with (
        mock_worker(
            "--model", "bench-model", "--slots", "1024", "--prefill-seconds", "0", "--decode-seconds-per-token", "0"
        ) as upstream,
        redis_server() as redis,
    ):
        for callers in (1, 16):
            for row in uvloop.run(upstream_rows(upstream.url, args.calls, callers)):
                print(json.dumps(row), flush=True)
            for row in uvloop.run(redis_rows(redis.url, args.calls, callers)):
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
