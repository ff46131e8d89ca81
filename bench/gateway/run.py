"""Gateway benchmark: straight to the upstream, through this gateway, through LiteLLM proxy.

Same machine, same run, same mock upstream (zero prefill and decode). wrk drives the load:
c=1 for added latency (p50/p99), c=32 for throughput and p99; the gateway runs with auth,
Redis limits (high enough never to refuse) and metrics on. Then the noisy-neighbour scenario.

    .venv/bin/python bench/gateway/run.py [--duration 10] [--skip-litellm]

Needs wrk (apt-get install wrk) and, for the LiteLLM column, bench/.litellm-venv with
`pip install 'litellm[proxy]'` (a throwaway virtual environment, never committed).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.gateway.neighbour import noisy_neighbour  # noqa: E402
from services.gateway.process import gateway, redis_server, write_config  # noqa: E402
from services.mock_worker.process import free_port, mock_worker, stop, wait_healthy  # noqa: E402

HERE = Path(__file__).resolve().parent
KEY = "sk-bench-0001"
LITELLM_KEY = "sk-bench-litellm-master"
LITELLM = ROOT / "bench" / ".litellm-venv" / "bin" / "litellm"


def wrk(url: str, connections: int, duration: int, key: str = "") -> dict:
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "post.lua"),
            f"{url}/v1/chat/completions",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_KEY": key},
        check=True,
    ).stdout
    match = re.search(
        r"RESULT requests=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+) errors=(\d+) non2xx=(\d+)", out
    )
    requests, duration_us, p50, p99, errors, non2xx = map(int, match.groups())
    return {
        "rps": requests / (duration_us / 1e6),
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "errors": errors,
        "non2xx": non2xx,
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def litellm_proxy(upstream: str, work: Path):
    config = work / "litellm.yaml"
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": "bench-model",
                        "litellm_params": {
                            "model": "openai/bench-model",
                            "api_base": f"{upstream}/v1",
                            "api_key": "unused",
                        },
                    }
                ],
                "litellm_settings": {"telemetry": False},
                # LiteLLM refuses to start without a key; checking one per request is what our gateway does too.
                "general_settings": {"master_key": LITELLM_KEY},
            }
        )
    )
    port = free_port()
    process = subprocess.Popen(
        [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "LITELLM_LOG": "ERROR"},
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health/liveliness", process, timeout=120)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process)


def measure(name: str, url: str, duration: int, key: str = "", pid: int | None = None) -> dict:
    wrk(url, 4, 2, key)  # warm-up: connection pools, JIT-free but caches
    row = {"target": name, "c1": wrk(url, 1, duration, key), "c32": wrk(url, 32, duration, key)}
    if pid:
        row["rss_mib"] = rss_mib(pid)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout of this repository: its gateway is measured in the same run"
    )
    parser.add_argument(
        "--c1-rounds",
        type=int,
        default=0,
        help="then this many interleaved rounds of c=1 only (direct, this gateway, the baseline: --c1-seconds each), "
        "with every process up throughout; medians reported",
    )
    parser.add_argument("--c1-seconds", type=int, default=3)
    parser.add_argument(
        "--quiet-direct-ms",
        type=float,
        default=0.0,
        help="also report the interleaved rounds whose direct c=1 p50 was at most this (the machine's quiet speed)",
    )
    parser.add_argument("--skip-neighbour", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    print(f"machine: {os.cpu_count()} cpus, {cpu}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock_worker(
            "--model", "bench-model", "--slots", "1024", "--prefill-seconds", "0", "--decode-seconds-per-token", "0"
        ) as upstream,
        redis_server() as redis,
    ):
        work = Path(tmp)
        rows.append(measure("direct (mock upstream)", upstream.url, args.duration))
        document = {
            "tenants": {
                "bench": {
                    "tier": "gold",
                    "weight": 1,
                    "keyHashes": [hashlib.sha256(KEY.encode()).hexdigest()],
                    "models": ["bench-model"],
                    "limits": {"rpm": 100_000_000, "tpm": 10_000_000_000, "maxConcurrency": 256, "maxQueue": 1024},
                    "upstreams": {"mock": upstream.url},
                    "routes": {"bench-model": {"strategy": "direct", "primary": "mock"}},
                }
            }
        }
        with gateway(write_config(document, work), redis.url, log_level="WARNING") as gw:
            rows.append(
                measure("this gateway (auth, Redis limits, metrics)", gw.url, args.duration, KEY, gw.process.pid)
            )
        if args.baseline:
            with gateway(write_config(document, work), redis.url, log_level="WARNING", root=args.baseline) as gw:
                rows.append(measure(f"baseline gateway ({args.baseline})", gw.url, args.duration, KEY, gw.process.pid))
        if not args.skip_litellm and LITELLM.exists():
            with litellm_proxy(upstream.url, work) as (url, process):
                rows.append(measure("LiteLLM proxy", url, args.duration, LITELLM_KEY, process.pid))
        if args.c1_rounds:
            interleaved_c1(document, work, upstream.url, redis.url, args)
    direct, ours = rows[0], rows[1]
    print(
        f"added latency c=1: p50 {ours['c1']['p50_ms'] - direct['c1']['p50_ms']:.3f} ms, p99 {ours['c1']['p99_ms'] - direct['c1']['p99_ms']:.3f} ms"
    )
    print(f"c=32 throughput: gateway/direct {ours['c32']['rps'] / direct['c32']['rps']:.2f}x")
    for row in rows[2:]:
        print(
            f"{row['target']}: added c=1 p50 {row['c1']['p50_ms'] - direct['c1']['p50_ms']:.3f} ms, "
            f"c=32 {row['c32']['rps'] / direct['c32']['rps']:.2f}x direct, gateway/it {ours['c32']['rps'] / row['c32']['rps']:.2f}x"
        )
    if not args.skip_neighbour:
        print(json.dumps(noisy_neighbour(args.duration), indent=1))


def interleaved_c1(document: dict, work: Path, upstream: str, redis: str, args) -> None:
    """c=1 in short turns, rotating over the targets, so a slow spell of a shared machine hits all of them.

    Single long runs one after the other measure the machine as much as the gateway when its speed
    drifts over minutes (CPU steal on a shared VM); here every target has a run in every round.
    """
    with contextlib.ExitStack() as stack:
        targets = [("direct", upstream, "")]
        ours = stack.enter_context(gateway(write_config(document, work), redis, log_level="WARNING"))
        targets.append(("this gateway", ours.url, KEY))
        if args.baseline:
            base = stack.enter_context(
                gateway(write_config(document, work), redis, log_level="WARNING", root=args.baseline)
            )
            targets.append((f"baseline ({args.baseline})", base.url, KEY))
        for _, url, key in targets:
            wrk(url, 1, 2, key)
        p50s: dict[str, list[float]] = {name: [] for name, _, _ in targets}
        added: dict[str, list[float]] = {name: [] for name, _, _ in targets[1:]}
        for round_ in range(args.c1_rounds):
            # Rotate who goes first, so no target always follows the same one.
            order = targets[round_ % len(targets) :] + targets[: round_ % len(targets)]
            measured = {name: wrk(url, 1, args.c1_seconds, key)["p50_ms"] for name, url, key in order}
            for name, p50 in measured.items():
                p50s[name].append(p50)
            for name in added:
                added[name].append(measured[name] - measured["direct"])
            print(json.dumps({"round": round_ + 1, **measured}), flush=True)
    for name, values in p50s.items():
        line = f"interleaved c=1 p50, {name}: median {statistics.median(values):.3f} ms"
        if name in added:
            line += (
                f", added median {statistics.median(added[name]):.3f} ms "
                f"(min {min(added[name]):.3f}, max {max(added[name]):.3f})"
            )
        print(line, flush=True)
    if args.quiet_direct_ms:
        # On a VM whose speed changes by the minute (CPU steal), the rounds in which the direct path
        # ran at the machine's quiet speed are the ones that judge a sub-millisecond target.
        quiet = [i for i, direct in enumerate(p50s["direct"]) if direct <= args.quiet_direct_ms]
        for name, values in added.items():
            picked = [values[i] for i in quiet]
            median = f"{statistics.median(picked):.3f} ms" if picked else "no such round"
            print(
                f"quiet rounds (direct p50 <= {args.quiet_direct_ms} ms: {len(quiet)} of {len(values)}), "
                f"{name}: added median {median}",
                flush=True,
            )


if __name__ == "__main__":
    main()
