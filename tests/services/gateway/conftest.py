"""Real processes: Redis, mock workers and gateways on loopback."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from services.gateway.process import gateway, redis_server
from services.mock_worker.process import mock_worker

KEYS = {"acme": "sk-acme-primary-0001", "acme2": "sk-acme-secondary-0002", "globex": "sk-globex-0003"}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def eventually(check, message: str, seconds: float = 5.0, interval: float = 0.05):
    """Poll `check()` until it gives something true (returned), failing with `message` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, message
        time.sleep(interval)
    return found


def tenant(keys, models, upstreams, routes, **limits):
    return {
        "tier": "gold",
        "weight": 2,
        "keyHashes": [digest(k) for k in keys],
        "models": models,
        "limits": {"rpm": 10_000, "tpm": 10_000_000, "maxConcurrency": 16, "maxQueue": 64, **limits},
        "upstreams": upstreams,
        "routes": routes,
    }


@pytest.fixture(scope="session")
def redis():
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def workers():
    with (
        mock_worker("--model", "llama", "--model", "qwen", "--slots", "64", "--decode-seconds-per-token", "0") as a,
        mock_worker("--model", "llama", "--slots", "64", "--decode-seconds-per-token", "0") as b,
    ):
        yield a, b


def document(workers, **acme_limits):
    a, b = workers
    return {
        "tenants": {
            "acme": tenant(
                [KEYS["acme"], KEYS["acme2"]],
                ["llama"],
                {"stable": a.url, "canary": b.url},
                {"llama": {"strategy": "canary", "primary": "stable", "canary": "canary", "percent": 20}},
                **acme_limits,
            ),
            "globex": tenant(
                [KEYS["globex"]], ["qwen"], {"main": a.url}, {"qwen": {"strategy": "direct", "primary": "main"}}
            ),
        }
    }


@pytest.fixture(scope="session")
def config_file(tmp_path_factory, workers) -> Path:
    path = tmp_path_factory.mktemp("gw") / "gateway.json"
    path.write_text(json.dumps(document(workers)))
    return path


@pytest.fixture(scope="session")
def gw(config_file, redis):
    with gateway(config_file, redis.url, reload_interval_seconds=0.2) as service:
        yield service
