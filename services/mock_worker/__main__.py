"""`python -m services.mock_worker --port 8000 --model mock-llama --slots 4`"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import socket
import sys

import uvicorn
from prometheus_client import disable_created_metrics
from pydantic import ValidationError

from .app import create_app
from .settings import WorkerSettings

log = logging.getLogger("mock_worker")


def parse_args(argv: list[str] | None) -> dict[str, object]:
    """CLI flags override MOCK_WORKER_* variables; only flags actually given are returned."""
    p = argparse.ArgumentParser(
        prog="python -m services.mock_worker", description=__doc__, argument_default=argparse.SUPPRESS
    )
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        help="model name to serve (repeat for several); env MOCK_WORKER_MODELS=a,b",
    )
    p.add_argument("--engine", choices=["vllm", "sglang"], help="metric flavour (default vllm)")
    p.add_argument("--slots", type=int, help="concurrent slots / batch size (default 8)")
    p.add_argument("--prefill-seconds", type=float, help="time to first token (default 0.02)")
    p.add_argument("--decode-seconds-per-token", type=float, help="per-token decode time (default 0.005)")
    p.add_argument("--prefill-seconds-per-token", type=float, help="prefill time per uncached prompt token (default 0)")
    p.add_argument("--prefill-concurrency", type=int, help="prefills computed at once, 0 for no limit (default 0)")
    p.add_argument("--cache-tokens", type=int, help="prefix/KV cache capacity in tokens, 0 for none (default 262144)")
    p.add_argument("--block-size", type=int, help="tokens per cache block (default 16)")
    p.add_argument("--stream-interval", type=int, help="tokens per streamed chunk after the first (default 1)")
    p.add_argument("--default-max-tokens", type=int, help="output length without max_tokens (default 16)")
    p.add_argument("--max-tokens-cap", type=int, help="largest max_tokens accepted (default 4096)")
    p.add_argument("--failure-rate", type=float, help="share of requests answered 500 (default 0)")
    p.add_argument("--seed", type=int, help="fixes failure injection and output text")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--fd", type=int, help="serve on this inherited, already-bound listening socket")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    return vars(p.parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    try:
        settings = WorkerSettings(**parse_args(argv))
    except ValidationError as exc:
        sys.exit(f"mock worker: invalid settings (flags or MOCK_WORKER_* variables):\n{exc}")
    # Like the engines' own exporters, skip the *_created series: they only add scrape noise.
    disable_created_metrics()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # uvloop and httptools roughly double throughput as a benchmark upstream; fall back when absent.
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="off",
        access_log=settings.access_log,
        # Nothing here reads client addresses, so skip X-Forwarded-* parsing on every request.
        proxy_headers=False,
        server_header=False,
        log_level=settings.log_level,
        backlog=4096,
    )
    server = uvicorn.Server(config)
    sockets = None
    if settings.fd is not None:
        # socket(fileno=...) detects the family itself (uvicorn's own --fd assumes AF_UNIX).
        sockets = [socket.socket(fileno=settings.fd)]
        host, port = sockets[0].getsockname()[:2]
        where = f"{host}:{port} (inherited fd {settings.fd})"
    else:
        where = f"{settings.host}:{settings.port}"
    log.info(
        "serving %s as %s engine on %s: %d slots, prefill %.3fs, decode %.4fs/token, failure rate %g",
        ",".join(settings.models),
        settings.engine,
        where,
        settings.slots,
        settings.prefill_seconds,
        settings.decode_seconds_per_token,
        settings.failure_rate,
    )
    server.run(sockets=sockets)


if __name__ == "__main__":
    main()
