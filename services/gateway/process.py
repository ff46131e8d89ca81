"""Run Redis and gateway processes on loopback for tests, benchmarks and `make demo`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.mock_worker.process import ROOT, RunningService, free_port, stop, wait_healthy


@contextlib.contextmanager
def redis_server(*flags: str, port: int | None = None) -> Iterator[RunningService]:
    """A throwaway redis-server (Debian's; scripts/install-system-packages.sh installs it); `flags` go to it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: run scripts/install-system-packages.sh")
    port = port or free_port()
    with tempfile.TemporaryDirectory() as data:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", data]
            + list(flags),
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not _answers_ping(port):
            if time.monotonic() > deadline or process.poll() is not None:
                stop(process)
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        try:
            yield RunningService(url, process)
        finally:
            stop(process)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            # A server with a password answers -NOAUTH: it is up all the same.
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def write_config(document: dict[str, Any], directory: Path) -> Path:
    path = directory / "gateway.json"
    path.write_text(json.dumps(document))
    return path


@dataclass(frozen=True)
class GatewayService(RunningService):
    metrics_url: str
    """Root URL of the metrics port: GET {metrics_url}/metrics."""


@contextlib.contextmanager
def gateway(
    config_file: Path, redis_url: str | None = None, log_path: Path | None = None, root: Path = ROOT, **settings: Any
) -> Iterator[GatewayService]:
    """A gateway process; extra keyword settings become GATEWAY_* environment variables; logs to `log_path` if given.

    `root`: the checkout to run it from (the benchmark compares another revision in the same run).
    """
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_METRICS_PORT": str(metrics_port),
        "GATEWAY_CONFIG_FILE": str(config_file),
    }
    if redis_url:
        env["GATEWAY_REDIS_URL"] = redis_url
    env.update({f"GATEWAY_{key.upper()}": str(value) for key, value in settings.items()})
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed when the process stops
    process = subprocess.Popen([sys.executable, "-m", "services.gateway"], cwd=root, env=env, stderr=log)
    service = GatewayService(f"http://127.0.0.1:{port}", process, f"http://127.0.0.1:{metrics_port}")
    try:
        wait_healthy(f"{service.url}/readyz", process)
        yield service
    finally:
        stop(process)
        if log:
            log.close()
