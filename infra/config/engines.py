"""The inference engines, one entry each: everything the program needs to know about an engine.

The config's allowed `engine` values, the worker's container (image, command, port, environment,
default size, readiness budget), the gateway's egress port to workers, the metrics catalog and the
autoscaler's queue metric are all read from `ENGINES`. Adding an engine is one `Engine(...)` entry
here and its tests; the mock worker's metric names are tested against the entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.config.workers import Worker

# Every engine is told to listen here (vLLM's default), so Services, probes and the gateway's egress
# policy agree without a per-engine lookup at each place.
DEFAULT_PORT = 8000

# The real engines run PyTorch as uid 10001, which has no passwd entry: getpass.getuser() (torch's compile
# cache, triton) fails without USER, and their caches default to unwritable paths under a read-only root.
_TORCH_ENV = {
    "USER": "engine",
    "XDG_CACHE_HOME": "/tmp/.cache",
    "TORCHINDUCTOR_CACHE_DIR": "/tmp/.cache/torchinductor",
    "TRITON_CACHE_DIR": "/tmp/.cache/triton",
}


@dataclass(frozen=True)
class Engine:
    name: str
    # The `images:` setting holding its image.
    image_setting: str
    # `command`/`args` of the engine container for a worker (port already chosen).
    container: Callable[[Worker, int], dict[str, Any]]
    # Default requests and limits when the worker states none.
    resources: dict[str, str]
    # The engine's own gauge of requests waiting for a slot: what the worker's HPA scales on.
    queue_metric: str
    # Every metric of the engine that rules and dashboards may use (the catalog).
    metrics: tuple[str, ...]
    # Downloads weights at start: gets HTTPS egress to public addresses unless the worker says otherwise.
    needs_egress: bool
    # How long `pulumi up` waits for a worker to become ready: image pull and weight download included.
    ready_timeout: str
    # Shards a model over `tensorParallelSize` GPUs (the mock has no notion of it).
    tensor_parallel: bool
    env: dict[str, str] = field(default_factory=dict)
    port: int = DEFAULT_PORT


def _mock(worker: Worker, port: int) -> dict[str, Any]:
    return {"args": ["--host", "0.0.0.0", "--port", str(port), "--model", worker.served_name, *worker.extra_args]}


def _vllm(worker: Worker, port: int) -> dict[str, Any]:
    # The image's entrypoint is the OpenAI-compatible server.
    args = [
        "--model",
        worker.model,
        "--served-model-name",
        worker.served_name,
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
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


def _sglang(worker: Worker, port: int) -> dict[str, Any]:
    args = [
        "--model-path",
        worker.model,
        "--served-model-name",
        worker.served_name,
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--tp-size",
        str(worker.tensor_parallel_size),
        "--mem-fraction-static",
        str(worker.gpu_memory_utilization),
        "--enable-metrics",
    ]
    if worker.max_model_len:
        args += ["--context-length", str(worker.max_model_len)]
    return {"command": ["python3", "-m", "sglang.launch_server"], "args": args + worker.extra_args}


VLLM_METRICS = (
    "vllm:num_requests_waiting",
    "vllm:num_requests_running",
    "vllm:time_to_first_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    # KV-cache use and prefix-cache hits: what the gateway's endpoint picker and the dashboards read.
    "vllm:kv_cache_usage_perc",
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
)
SGLANG_METRICS = ("sglang:num_queue_reqs", "sglang:num_running_reqs")

# What every real (GPU) engine shares: host memory for weights and the KV-cache swap, a weight download
# at start, an hour's readiness budget for image and weights, tensor parallelism, PyTorch's environment.
_REAL_ENGINE: dict[str, Any] = {
    "resources": {"cpu": "4", "cpu_limit": "8", "memory": "16Gi", "memory_limit": "32Gi"},
    "needs_egress": True,
    "ready_timeout": "60m",
    "tensor_parallel": True,
    "env": _TORCH_ENV,
}

ENGINES: dict[str, Engine] = {
    engine.name: engine
    for engine in (
        # The mock is a small CPU process exporting vLLM's names (its default metric flavour).
        Engine(
            name="mock",
            image_setting="mock_worker",
            container=_mock,
            resources={"cpu": "250m", "cpu_limit": "500m", "memory": "256Mi", "memory_limit": "512Mi"},
            queue_metric="vllm:num_requests_waiting",
            metrics=VLLM_METRICS,
            needs_egress=False,
            ready_timeout="10m",
            tensor_parallel=False,
        ),
        Engine(
            name="vllm",
            image_setting="vllm",
            container=_vllm,
            queue_metric="vllm:num_requests_waiting",
            metrics=VLLM_METRICS,
            **_REAL_ENGINE,
        ),
        Engine(
            name="sglang",
            image_setting="sglang",
            container=_sglang,
            queue_metric="sglang:num_queue_reqs",
            metrics=SGLANG_METRICS,
            **_REAL_ENGINE,
        ),
    )
}


def engine(name: str) -> Engine:
    return ENGINES[name]


def worker_ports() -> list[int]:
    """Every port a worker may listen on: the gateway's egress policy opens exactly these."""
    return sorted({e.port for e in ENGINES.values()})
