"""`make demo`: the kind stack's data plane on this machine, without Kubernetes.

Redis, one mock worker per worker in the stack file, and the gateway configured from the same
stack (infra.gateway_document builds the document GatewayStack puts in its Secret), then
traffic from tenants: one within its limit, one far over it, one on a canary route. Every
process started here is stopped before it returns.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import secrets
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from infra.gateway_document import gateway_document
from infra.stack_file import load_stack_file, stack_file_path
from policies.platform_rules.contract import hash_api_key
from services.gateway.process import gateway, redis_server, write_config
from services.mock_worker.process import mock_worker

# (tenant, requests, concurrency): acme stays within gold's limits, initech floods bronze's 60 rpm,
# globex exercises its canary route.
TRAFFIC = [("acme", 120, 4), ("initech", 150, 8), ("globex", 80, 4)]


def send(url: str, key: str, model: str, count: int, concurrency: int) -> list[tuple[int, float, str]]:
    def one(_: int) -> tuple[int, float, str]:
        started = time.perf_counter()
        response = httpx.post(
            f"{url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": model, "messages": [{"role": "user", "content": "hello from the demo"}], "max_tokens": 8},
            timeout=30,
        )
        return response.status_code, time.perf_counter() - started, response.headers.get("x-upstream", "")

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(count)))


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else (values[0] if values else 0.0)
    )


def main(stack: str = "kind") -> int:
    console = Console(width=150)
    config = load_stack_file(stack_file_path(stack))
    keys = {tenant.name: f"sk-demo-{secrets.token_urlsafe(24)}" for tenant in config.tenants}
    hashes = {name: {"demo": hash_api_key(key)} for name, key in keys.items()}
    with contextlib.ExitStack() as running, tempfile.TemporaryDirectory() as workdir:
        console.print(f"[bold]demo[/]: data plane of stack {stack!r} on 127.0.0.1 (Redis, mock workers, gateway)")
        redis = running.enter_context(redis_server())
        upstreams: dict[str, dict[str, str]] = {}
        for tenant in config.tenants:
            for worker in tenant.workers:
                engine = "sglang" if "canary" in worker.name else "vllm"
                service = running.enter_context(
                    mock_worker(
                        "--model",
                        worker.served_name,
                        "--slots",
                        "4",
                        "--decode-seconds-per-token",
                        "0.002",
                        "--engine",
                        engine,
                    )
                )
                upstreams.setdefault(tenant.name, {})[worker.name] = service.url
        document = gateway_document(config, hashes, upstreams)
        gw = running.enter_context(gateway(write_config(document, Path(workdir)), redis.url))
        table = Table(title="per-tenant results")
        for column in (
            "tenant",
            "tier",
            "limit rpm",
            "sent",
            "accepted",
            "limited (429)",
            "other",
            "p50 ms",
            "p99 ms",
            "upstreams",
        ):
            table.add_column(column)
        for name, count, concurrency in TRAFFIC:
            tenant = next(t for t in config.tenants if t.name == name)
            results = send(gw.url, keys[name], tenant.allowed_models[0], count, concurrency)
            codes = Counter(code for code, _, _ in results)
            latencies = [seconds * 1000 for code, seconds, _ in results if code == 200]
            split = Counter(upstream for code, _, upstream in results if code == 200)
            table.add_row(
                name,
                tenant.tier,
                str(config.tenant_limits(tenant).rpm),
                str(count),
                str(codes[200]),
                str(codes[429]),
                str(count - codes[200] - codes[429]),
                f"{percentile(latencies, 50):.1f}",
                f"{percentile(latencies, 99):.1f}",
                ", ".join(f"{u} {n}" for u, n in sorted(split.items())),
            )
        console.print(table)
        console.print("stopping Redis, the mock workers and the gateway")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
