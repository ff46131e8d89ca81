"""Routing benchmark: four mock pods with prefix caches, the same open-loop traffic through each router.

    .venv/bin/python bench/routing/run.py [--seconds 30] [--targets rr,picker,vllm-router,sglang-router]

Targets: this gateway with `round-robin` (what a Service gives, without its randomness), this
gateway with its `prefix` picker, vllm-router (`cache_aware`; `vllm-router-hash`: its
`consistent_hash` session policy, keyed on the x-session-id header) and sglang-router (`cache_aware`), both from
bench/.routing-venv: `python3 -m venv bench/.routing-venv && bench/.routing-venv/bin/pip install
vllm-router sglang-router`). The pods are restarted for every target and workload, so every run
starts with cold caches; requests arriving in the first --warmup seconds are sent but not counted
in the latencies (the prefix-hit rate counts them all). Then the gateway's added latency at c=1 with the picker on (wrk, as in
bench/gateway/run.py). Everything shares this machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.routing.workload import no_sharing, run_open_loop, shared_prefix  # noqa: E402
from services.gateway.process import gateway, write_config  # noqa: E402
from services.mock_worker.process import free_port, mock_worker, stop, wait_healthy  # noqa: E402

KEY = "sk-bench-routing-0001"
ROUTERS = ROOT / "bench" / ".routing-venv" / "bin"
# A pod: 8 sequences at once, prefill 10,000 tokens/s computed one prompt at a time, 20 ms per
# output token, 8,000 tokens of KV cache: room for about three of the eight 2,000-token system
# prompts, so only the four pods' caches together hold them all.
POD = [
    "--model", "bench-model", "--slots", "8", "--prefill-seconds", "0.005",
    "--prefill-seconds-per-token", "0.0001", "--prefill-concurrency", "1",
    "--decode-seconds-per-token", "0.02", "--stream-interval", "4",
    "--cache-tokens", "8000", "--block-size", "16", "--log-level", "warning",
]  # fmt: skip
MAX_TOKENS = 24
MEDIAN_KEYS = (
    "ttft_p50_ms", "ttft_p99_ms", "e2e_p99_ms", "throughput_rps", "prefix_hit_rate",
    "pods_ttft_mean_ms", "beyond_pods_ttft_mean_ms",
)  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


POD_SERIES = (
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "vllm:time_to_first_token_seconds_sum",
    "vllm:time_to_first_token_seconds_count",
)


def pod_counts(url: str) -> dict[str, float]:
    """The pod's prefix-cache counters and its own time-to-first-token sum and count."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = dict.fromkeys(POD_SERIES, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0]
        if name in found:
            found[name] += float(line.rsplit(" ", 1)[1])
    return found


@contextlib.contextmanager
def router(kind: str, pods: list[str]):
    port = free_port()
    policy = "consistent_hash" if kind == "vllm-router-hash" else "cache_aware"
    common = ["--host", "127.0.0.1", "--port", str(port), "--worker-urls", *pods, "--policy", policy]
    if kind.startswith("vllm-router"):
        cmd = [str(ROUTERS / "vllm-router"), *common, "--prometheus-port", str(free_port())]
        cmd += ["--max-concurrent-requests", "4096", "--log-level", "warning"]
    else:
        cmd = [str(ROUTERS / "python"), "-m", "sglang_router.launch_router", *common]
        cmd += ["--prometheus-port", str(free_port()), "--max-concurrent-requests", "4096", "--log-level", "warn"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", process, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def document(pods: list[str], policy: str) -> dict:
    worker = "http://bench-model.bench.svc.cluster.local:8000"
    return {
        "tenants": {
            "bench": {
                "tier": "gold",
                "weight": 1,
                "keyHashes": [hashlib.sha256(KEY.encode()).hexdigest()],
                "models": ["bench-model"],
                "limits": {"maxConcurrency": 1024, "maxQueue": 4096},
                "upstreams": {"pods": worker},
                "routes": {"bench-model": {"strategy": "direct", "primary": "pods", "picker": policy}},
            }
        },
        "endpoints": {worker: pods},
    }


@contextlib.contextmanager
def target(name: str, pods: list[str], work: Path):
    if name in ("rr", "picker"):
        path = write_config(document(pods, "round-robin" if name == "rr" else "prefix"), work)
        with gateway(path, None, log_level="WARNING", picker_scrape_seconds=0.25, discovery="off") as gw:
            yield gw.url, KEY
    else:
        with router(name, pods) as url:
            yield url, ""


def measure(name: str, workload: str, plan, work: Path, warmup: float) -> dict:
    with contextlib.ExitStack() as stack:
        pods = [stack.enter_context(mock_worker(*POD)) for _ in range(4)]
        urls = [p.url for p in pods]
        url, key = stack.enter_context(target(name, urls, work))
        results, wall = asyncio.run(run_open_loop(url, key, plan, MAX_TOKENS))
        counts = [pod_counts(u) for u in urls]
    errors = sum(1 for r in results if r.status != 200 or r.ttft is None)
    # Requests that arrived while the caches were still cold are sent but not counted.
    ok = [r for item, r in zip(plan, results, strict=True) if item.at >= warmup and r.status == 200 and r.ttft]
    total = {name: sum(c[name] for c in counts) for name in POD_SERIES}
    queried, hit = total["vllm:prefix_cache_queries_total"], total["vllm:prefix_cache_hits_total"]
    answered = [r.ttft for r in results if r.status == 200 and r.ttft]
    first_tokens = max(1.0, total["vllm:time_to_first_token_seconds_count"])
    pods_ttft = total["vllm:time_to_first_token_seconds_sum"] / first_tokens
    row = {
        "workload": workload,
        "target": name,
        "requests": len(results),
        "counted": len(ok),
        "errors": errors,
        "ttft_p50_ms": 1000 * percentile([r.ttft for r in ok], 0.50),
        "ttft_p99_ms": 1000 * percentile([r.ttft for r in ok], 0.99),
        "e2e_p99_ms": 1000 * percentile([r.e2e for r in ok], 0.99),
        "e2e_mean_ms": 1000 * statistics.fmean([r.e2e for r in ok]) if ok else float("nan"),
        "throughput_rps": (len(results) - errors) / wall,
        "prefix_hit_rate": hit / queried if queried else 0.0,
        # Over every request, warm-up included: the mean TTFT the pods themselves measured (queue,
        # prefill, first token: what placement decides), and what the client saw beyond it (the
        # router's own time, both ways, plus the client's and the pods' HTTP handling).
        "pods_ttft_mean_ms": 1000 * pods_ttft,
        "beyond_pods_ttft_mean_ms": 1000 * (statistics.fmean(answered) - pods_ttft) if answered else float("nan"),
        "per_pod_queries": [round(c["vllm:prefix_cache_queries_total"]) for c in counts],
    }
    print(json.dumps(row), flush=True)
    return row


def added_latency(seconds: int, work: Path) -> dict:
    """c=1 (wrk, as bench/gateway/run.py): one zero-delay pod directly, the gateway with that one pod
    as its worker (no picking), and the gateway with the prefix picker over four such pods."""
    from bench.gateway.run import wrk

    flags = ["--model", "bench-model", "--slots", "1024", "--prefill-seconds", "0", "--decode-seconds-per-token", "0"]
    row = {}
    with contextlib.ExitStack() as stack:
        pods = [stack.enter_context(mock_worker(*flags, "--log-level", "warning")) for _ in range(4)]
        single = document([pods[0].url], "prefix")
        single["tenants"]["bench"]["upstreams"]["pods"] = pods[0].url
        single["endpoints"] = {}
        (work / "single").mkdir(exist_ok=True)
        (work / "four").mkdir(exist_ok=True)
        targets = {
            "direct": (pods[0].url, ""),
            "gateway, one pod": (write_config(single, work / "single"), KEY),
            "gateway, picker over four pods": (
                write_config(document([p.url for p in pods], "prefix"), work / "four"),
                KEY,
            ),
        }
        for name, (where, key) in targets.items():
            with contextlib.ExitStack() as inner:
                url = (
                    where
                    if isinstance(where, str)
                    else inner.enter_context(gateway(where, None, log_level="WARNING", discovery="off")).url
                )
                wrk(url, 1, 2, key)
                result = wrk(url, 1, seconds, key)
            row[name] = {"p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "rps": result["rps"]}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--shared-rate", type=float, default=22.0, help="requests/s on the shared-prefix workload")
    parser.add_argument("--none-rate", type=float, default=32.0, help="requests/s on the no-sharing workload")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every target this many times, interleaved")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of arrivals sent but not counted")
    parser.add_argument("--targets", default="rr,picker,vllm-router,vllm-router-hash,sglang-router")
    parser.add_argument("--workloads", default="shared,none")
    parser.add_argument("--c1-seconds", type=int, default=10, help="0 skips the added-latency measurement")
    parser.add_argument("--out", type=Path, default=None, help="write all rows here as JSON")
    args = parser.parse_args()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.machine(),
    )
    print(
        f"machine: {os.cpu_count()} cpus, {cpu}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    targets = args.targets.split(",")
    missing = [t for t in targets if t.endswith("router") and not (ROUTERS / "python").exists()]
    if missing:
        sys.exit(f"{missing} need bench/.routing-venv (see this file's docstring)")
    plans = {
        "shared": shared_prefix(args.shared_rate, args.seconds),
        "none": no_sharing(args.none_rate, args.seconds),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for workload in args.workloads.split(","):
            # Rounds interleave the targets, so a slow spell of the shared machine hits them all alike.
            for round_ in range(args.rounds):
                for name in targets:
                    rows.append({"round": round_, **measure(name, workload, plans[workload], work, args.warmup)})
        if args.rounds > 1:
            for workload in args.workloads.split(","):
                for name in targets:
                    mine = [r for r in rows if r["workload"] == workload and r["target"] == name]
                    medians = {key: statistics.median(r[key] for r in mine) for key in MEDIAN_KEYS}
                    print(json.dumps({"workload": workload, "target": name, "median_of_rounds": medians}), flush=True)
        latency = added_latency(args.c1_seconds, work) if args.c1_seconds and shutil.which("wrk") else None
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "c1": latency}, indent=1))


if __name__ == "__main__":
    main()
