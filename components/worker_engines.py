"""Command lines and default sizes of the inference engines InferenceWorker runs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from infra.config.workers import Worker
from infra.quantity import parse_quantity

PORT = 8000  # vLLM's default; every engine is told to listen here

_DEFAULTS = {
    # The mock is a small CPU process; real engines need host memory for weights and the KV-cache swap.
    "mock": {"cpu": "250m", "cpu_limit": "500m", "memory": "256Mi", "memory_limit": "512Mi"},
    "vllm": {"cpu": "4", "cpu_limit": "8", "memory": "16Gi", "memory_limit": "32Gi"},
    "sglang": {"cpu": "4", "cpu_limit": "8", "memory": "16Gi", "memory_limit": "32Gi"},
}

# The real engines run PyTorch as uid 10001, which has no passwd entry: getpass.getuser() (torch's compile
# cache, triton) fails without USER, and their caches default to unwritable paths under a read-only root.
_REAL_ENGINE_ENV = {
    "USER": "engine",
    "XDG_CACHE_HOME": "/tmp/.cache",
    "TORCHINDUCTOR_CACHE_DIR": "/tmp/.cache/torchinductor",
    "TRITON_CACHE_DIR": "/tmp/.cache/triton",
}
_ENV = {"mock": {}, "vllm": _REAL_ENGINE_ENV, "sglang": _REAL_ENGINE_ENV}

# How long `pulumi up` waits for a worker to become ready: pulling a multi-GB image and downloading
# weights takes far longer than pulumi-kubernetes' 10-minute default.
_READY_TIMEOUT = {"mock": "10m", "vllm": "60m", "sglang": "60m"}


def default_resources(engine: str) -> dict[str, Decimal]:
    return {key: parse_quantity(value) for key, value in _DEFAULTS[engine].items()}


def engine_env(engine: str) -> dict[str, str]:
    return dict(_ENV[engine])


def ready_timeout(engine: str) -> str:
    return _READY_TIMEOUT[engine]


def container_args(worker: Worker) -> dict[str, Any]:
    """`command`/`args` of the engine container."""
    if worker.engine == "mock":
        args = ["--host", "0.0.0.0", "--port", str(PORT), "--model", worker.served_name]
        return {"args": args + worker.extra_args}
    if worker.engine == "vllm":
        # The image's entrypoint is the OpenAI-compatible server.
        args = [
            "--model",
            worker.model,
            "--served-model-name",
            worker.served_name,
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
            "--tensor-parallel-size",
            str(worker.tensor_parallel_size),
            "--gpu-memory-utilization",
            str(worker.gpu_memory_utilization),
            "--download-dir",
            "/models",
        ]
        if worker.max_model_len:
            args += ["--max-model-len", str(worker.max_model_len)]
        return {"args": args + worker.extra_args}
    if worker.engine == "sglang":
        args = [
            "--model-path",
            worker.model,
            "--served-model-name",
            worker.served_name,
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
            "--tp-size",
            str(worker.tensor_parallel_size),
            "--mem-fraction-static",
            str(worker.gpu_memory_utilization),
            "--enable-metrics",
        ]
        if worker.max_model_len:
            args += ["--context-length", str(worker.max_model_len)]
        return {"command": ["python3", "-m", "sglang.launch_server"], "args": args + worker.extra_args}
    raise ValueError(f"unknown engine {worker.engine!r}")
