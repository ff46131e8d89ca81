"""Settings parsing, start-up errors, and slots freed by clients that go away."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from services.mock_worker.__main__ import parse_args
from services.mock_worker.process import ROOT, run_mock_worker
from services.mock_worker.settings import WorkerSettings
from tests.services.mock_worker.mock_worker_scrape import parse_metrics, sample


def test_env_variables_configure_and_flags_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOCK_WORKER_MODELS", "llama-a, llama-b")
    monkeypatch.setenv("MOCK_WORKER_ENGINE", "sglang")
    monkeypatch.setenv("MOCK_WORKER_SLOTS", "3")
    from_env = WorkerSettings()
    assert (from_env.models, from_env.engine, from_env.slots) == (["llama-a", "llama-b"], "sglang", 3)
    flagged = WorkerSettings(**parse_args(["--slots", "9", "--model", "m1", "--model", "m2"]))
    assert (flagged.models, flagged.engine, flagged.slots) == (["m1", "m2"], "sglang", 9)


def test_kubernetes_service_link_variable_does_not_break_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOCK_WORKER_PORT", "tcp://10.96.0.12:8000")
    assert WorkerSettings().port == 8000
    monkeypatch.setenv("MOCK_WORKER_PORT", "9100")
    assert WorkerSettings().port == 9100


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(ValueError, match="slotz"):
        WorkerSettings(slotz=3)


def test_invalid_flag_value_exits_naming_the_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.mock_worker", "--slots", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "slots" in result.stderr


def test_dropped_stream_frees_its_slot() -> None:
    # One slot, and a stream that would hold it for 200 tokens x 20 ms = 4 s.
    with run_mock_worker(slots=1, decode_seconds_per_token=0.02) as worker:
        body = {"model": "mock-llama", "prompt": "long story", "max_tokens": 200, "stream": True}
        with httpx.stream("POST", f"{worker.openai_base_url}/completions", json=body, timeout=10) as resp:
            first = next(resp.iter_lines())
            assert first.startswith("data: ")
        started = time.monotonic()
        quick = httpx.post(
            f"{worker.openai_base_url}/completions",
            timeout=10,
            json={"model": "mock-llama", "prompt": "next", "max_tokens": 2},
        )
        assert quick.status_code == 200
        assert time.monotonic() - started < 2, "the dropped stream kept its slot"
        scraped = parse_metrics(worker.metrics_text())
    assert sample(scraped, "vllm:num_requests_running", model_name="mock-llama") == 0
    assert sample(scraped, "vllm:request_success_total", model_name="mock-llama", finished_reason="abort") == 1
    generated = sample(scraped, "vllm:generation_tokens_total", model_name="mock-llama")
    assert 2 < generated < 200 + 2, "only the tokens actually decoded are counted"
