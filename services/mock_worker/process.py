"""Start the mock worker as a real subprocess on a free loopback port (tests, benchmarks, demo).

    with mock_worker("--model", "mock-llama", "--slots", "2") as worker:      # raw CLI flags
        httpx.get(f"{worker.url}/v1/models")
    with run_mock_worker(slots=2, decode_seconds_per_token=0.01) as worker:   # keyword settings
        openai.OpenAI(base_url=worker.openai_base_url, api_key="unused")

Unless a port is given, the parent binds the listening socket itself (port 0) and hands it
to the child with --fd, so no other process can take the port between choosing and binding.
Only the standard library is used, so callers need none of the worker's dependencies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (prefer mock_worker() without a port: it has no race)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Poll `url` until it answers 200; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
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


@dataclass(frozen=True)
class RunningService:
    url: str
    """Root URL without /v1, e.g. http://127.0.0.1:40123."""
    process: subprocess.Popen

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def openai_base_url(self) -> str:
        """What the openai client takes as base_url."""
        return f"{self.url}/v1"

    def metrics_text(self, timeout: float = 5.0) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=timeout) as resp:
            return resp.read().decode()

    def stop(self) -> None:
        stop(self.process)


@contextlib.contextmanager
def mock_worker(
    *args: str, port: int | None = None, env: dict[str, str] | None = None, startup_timeout: float = 20.0
) -> Iterator[RunningService]:
    """A mock worker on 127.0.0.1 until the block exits; `args` are its command-line flags."""
    cmd = [sys.executable, "-m", "services.mock_worker", "--host", "127.0.0.1"]
    sock = None
    if port is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        port = sock.getsockname()[1]
        cmd += ["--fd", str(sock.fileno())]
    cmd += ["--port", str(port), *args]
    # Ambient MOCK_WORKER_* variables would silently change the worker under test.
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("MOCK_WORKER_")}
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), child_env.get("PYTHONPATH")]))
    child_env.update(env or {})
    with tempfile.TemporaryFile() as log:
        try:
            process = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(sock.fileno(),) if sock else (),
            )
        finally:
            if sock:
                sock.close()  # the child holds its own copy of the listening socket
        service = RunningService(f"http://127.0.0.1:{port}", process)
        try:
            try:
                wait_healthy(f"{service.url}/health", process, startup_timeout)
            except (RuntimeError, TimeoutError) as exc:
                log.seek(0)
                output = log.read().decode(errors="replace")[-4000:]
                raise RuntimeError(f"mock worker did not start: {exc}; its output:\n{output}") from None
            yield service
        finally:
            stop(process)


@contextlib.contextmanager
def run_mock_worker(
    *,
    models: Sequence[str] = ("mock-llama",),
    engine: str = "vllm",
    slots: int = 4,
    prefill_seconds: float = 0.0,
    decode_seconds_per_token: float = 0.0,
    failure_rate: float = 0.0,
    seed: int | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[RunningService]:
    """mock_worker() with keyword settings; the defaults are the fastest worker (no delays)."""
    args = [
        "--engine",
        engine,
        "--slots",
        str(slots),
        "--prefill-seconds",
        str(prefill_seconds),
        "--decode-seconds-per-token",
        str(decode_seconds_per_token),
        "--failure-rate",
        str(failure_rate),
        "--log-level",
        "warning",
    ]
    for model in models:
        args += ["--model", model]
    if seed is not None:
        args += ["--seed", str(seed)]
    with mock_worker(*args, *extra_args, env=env) as service:
        yield service
