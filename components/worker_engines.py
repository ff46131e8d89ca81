"""An InferenceWorker's container as its engine entry (infra/config/engines.py) describes it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from infra.config.engines import engine
from infra.config.workers import Worker
from infra.quantity import parse_quantity


def default_resources(name: str) -> dict[str, Decimal]:
    return {key: parse_quantity(value) for key, value in engine(name).resources.items()}


def engine_env(name: str) -> dict[str, str]:
    return dict(engine(name).env)


def ready_timeout(name: str) -> str:
    return engine(name).ready_timeout


def port(name: str) -> int:
    return engine(name).port


def container_args(worker: Worker) -> dict[str, Any]:
    """`command`/`args` of the engine container."""
    return engine(worker.engine).container(worker, engine(worker.engine).port)
