"""Token fairness through the real gateway: two equal-weight tenants, one asking 10× longer answers.

    .venv/bin/python bench/routing/fairness.py [--seconds 20]

One mock pod (64 slots, 2 ms per token) behind a gateway whose upstream budget is 4 requests
(GATEWAY_MAX_UPSTREAM_CONCURRENCY), so both tenants queue: `long` asks max_tokens 200, `short` 20,
each from 16 closed-loop clients. Tokens served per tenant are read from gateway_tokens_total
while both are backlogged (the counts at the end of the window minus those after a warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from services.gateway.process import gateway, write_config  # noqa: E402
from services.mock_worker.process import mock_worker  # noqa: E402

KEYS = {"long": "sk-fair-long-0001", "short": "sk-fair-short-0002"}
MAX_TOKENS = {"long": 200, "short": 20}
CAPACITY = 4


def tokens(text: str) -> dict[str, float]:
    served = {"long": 0.0, "short": 0.0}
    for line in text.splitlines():
        if line.startswith("gateway_tokens_total{"):
            tenant = line.split('tenant="', 1)[1].split('"', 1)[0]
            served[tenant] += float(line.rsplit(" ", 1)[1])
    return served


async def drive(url: str, seconds: float, warmup: float) -> tuple[dict, dict]:
    stop = time.monotonic() + warmup + seconds

    async def client(session: aiohttp.ClientSession, tenant: str) -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": "tell me"}], "max_tokens": MAX_TOKENS[tenant]}
        headers = {"authorization": f"Bearer {KEYS[tenant]}"}
        while time.monotonic() < stop:
            async with session.post(f"{url}/v1/chat/completions", json=body, headers=headers) as response:
                await response.read()

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(client(session, t)) for t in KEYS for _ in range(16)]
        await asyncio.sleep(warmup)
        async with session.get(f"{url}/metrics") as r:
            before = tokens(await r.text())
        await asyncio.sleep(seconds)
        async with session.get(f"{url}/metrics") as r:
            after = tokens(await r.text())
        await asyncio.gather(*tasks)
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    tenants = {
        name: {
            "tier": "gold",
            "weight": 1,
            "keyHashes": [hashlib.sha256(key.encode()).hexdigest()],
            "models": ["m"],
            "limits": {"maxConcurrency": 64, "maxQueue": 64},
            "upstreams": {"pod": "POD"},
            "routes": {"m": {"strategy": "direct", "primary": "pod"}},
        }
        for name, key in KEYS.items()
    }
    flags = ["--model", "m", "--slots", "64", "--prefill-seconds", "0", "--decode-seconds-per-token", "0.002"]
    with tempfile.TemporaryDirectory() as tmp, mock_worker(*flags, "--log-level", "warning") as pod:
        for tenant in tenants.values():
            tenant["upstreams"]["pod"] = pod.url
        path = write_config({"tenants": tenants}, Path(tmp))
        with gateway(path, None, max_upstream_concurrency=CAPACITY, log_level="WARNING") as gw:
            before, after = asyncio.run(drive(gw.url, args.seconds, warmup=3))
    served = {t: after[t] - before[t] for t in KEYS}
    total = sum(served.values())
    # The scheduler's stated bound: (C + 2) * L / w, L the largest request in tokens (prompt + answer).
    bound = (CAPACITY + 2) * (MAX_TOKENS["long"] + 10)
    row = {
        "seconds": args.seconds,
        "served_tokens": served,
        "long_share": served["long"] / total if total else 0.0,
        "difference": abs(served["long"] - served["short"]),
        "bound_at_any_moment": bound,
        # The window is a difference of two moments, each within the bound.
        "bound_over_the_window": 2 * bound,
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
