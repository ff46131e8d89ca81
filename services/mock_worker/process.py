"""Start services as real subprocesses on free loopback ports (tests, benchmarks, `make demo`)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not become healthy within {timeout:.0f}s")


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class RunningService:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        stop(self.process)


@contextlib.contextmanager
def mock_worker(*args: str, port: int | None = None, env: dict[str, str] | None = None) -> Iterator[RunningService]:
    """A mock worker on 127.0.0.1; extra `args` are its command-line flags."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.mock_worker", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    service = RunningService(f"http://127.0.0.1:{port}", process)
    try:
        wait_healthy(f"{service.url}/health", process)
        yield service
    finally:
        stop(process)
