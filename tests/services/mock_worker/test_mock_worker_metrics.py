"""/metrics under load: engine metric names, queue depth, token counters, failures."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import openai
import pytest

from services.mock_worker.process import run_mock_worker
from tests.services.mock_worker.mock_worker_scrape import parse_metrics, sample

SLOTS = 2
PROMPT = [{"role": "user", "content": "queue me"}]


def _load(base_url: str, requests: int, max_tokens: int) -> list[int]:
    """Fire `requests` concurrent chat requests; returns completion tokens of each."""

    async def go() -> list[int]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=30) as c:
            results = await asyncio.gather(
                *(
                    c.chat.completions.create(model="mock-llama", messages=PROMPT, max_tokens=max_tokens)
                    for _ in range(requests)
                )
            )
        return [r.usage.completion_tokens for r in results]

    return asyncio.run(go())


@pytest.mark.parametrize(
    "engine, waiting_name, running_name",
    [
        ("vllm", "vllm:num_requests_waiting", "vllm:num_requests_running"),
        ("sglang", "sglang:num_queue_reqs", "sglang:num_running_reqs"),
    ],
)
def test_queue_depth_rises_under_load_and_drains(engine: str, waiting_name: str, running_name: str) -> None:
    # 8 requests x 10 tokens x 20 ms on 2 slots: about 0.8 s with up to 6 queued.
    with run_mock_worker(engine=engine, slots=SLOTS, decode_seconds_per_token=0.02) as worker:
        labels = {"model_name": "mock-llama"}
        idle = parse_metrics(worker.metrics_text())
        assert sample(idle, waiting_name, **labels) == 0
        assert sample(idle, running_name, **labels) == 0

        done: list[int] = []
        load = threading.Thread(target=lambda: done.extend(_load(worker.openai_base_url, 8, 10)))
        load.start()
        peak_waiting = peak_running = 0.0
        deadline = time.monotonic() + 10
        while load.is_alive() and time.monotonic() < deadline:
            scraped = parse_metrics(worker.metrics_text())
            peak_waiting = max(peak_waiting, sample(scraped, waiting_name, **labels))
            peak_running = max(peak_running, sample(scraped, running_name, **labels))
            time.sleep(0.02)
        load.join(timeout=10)

        assert done == [10] * 8
        assert peak_waiting > 0, "requests beyond the slots never showed as waiting"
        assert peak_running == SLOTS, "running must fill, and never exceed, the slots"
        drained = parse_metrics(worker.metrics_text())
        assert sample(drained, waiting_name, **labels) == 0
        assert sample(drained, running_name, **labels) == 0


def test_counters_and_histograms_follow_the_tokens_served(worker, client: openai.OpenAI) -> None:
    labels = {"model_name": "mock-mistral"}
    before = parse_metrics(worker.metrics_text())
    usages = [
        client.chat.completions.create(model="mock-mistral", messages=PROMPT, max_tokens=n).usage for n in (1, 4, 9)
    ]
    stream = client.completions.create(
        model="mock-mistral", prompt="count me too", max_tokens=5, stream=True, stream_options={"include_usage": True}
    )
    usages.append(list(stream)[-1].usage)
    after = parse_metrics(worker.metrics_text())

    def delta(name: str, **extra: str) -> float:
        return sample(after, name, **labels, **extra) - sample(before, name, **labels, **extra)

    assert delta("vllm:prompt_tokens_total") == sum(u.prompt_tokens for u in usages)
    assert delta("vllm:generation_tokens_total") == sum(u.completion_tokens for u in usages) == 19
    assert delta("vllm:time_to_first_token_seconds_count") == 4
    assert delta("vllm:e2e_request_latency_seconds_count") == 4
    assert delta("vllm:request_success_total", finished_reason="length") == 4
    # Latency histograms are cumulative: every request falls in the +Inf bucket.
    assert delta("vllm:e2e_request_latency_seconds_bucket", le="+Inf") == 4


def test_sglang_flavour_exports_sglang_names_only() -> None:
    with run_mock_worker(engine="sglang", models=("sg-model",)) as worker:
        with openai.OpenAI(base_url=worker.openai_base_url, api_key="unused", max_retries=0) as c:
            usage = c.completions.create(model="sg-model", prompt="hello sglang", max_tokens=3).usage
        text = worker.metrics_text()
    scraped = parse_metrics(text)
    labels = {"model_name": "sg-model"}
    assert sample(scraped, "sglang:prompt_tokens_total", **labels) == usage.prompt_tokens
    assert sample(scraped, "sglang:generation_tokens_total", **labels) == 3
    assert sample(scraped, "sglang:time_to_first_token_seconds_count", **labels) == 1
    assert sample(scraped, "sglang:e2e_request_latency_seconds_count", **labels) == 1
    assert "vllm:" not in text


def test_failure_rate_one_gives_500_openai_error() -> None:
    with run_mock_worker(failure_rate=1.0) as worker:
        resp = httpx.post(
            f"{worker.openai_base_url}/chat/completions", timeout=10, json={"model": "mock-llama", "messages": PROMPT}
        )
        with openai.OpenAI(base_url=worker.openai_base_url, api_key="unused", max_retries=0) as c:
            with pytest.raises(openai.InternalServerError):
                c.completions.create(model="mock-llama", prompt="x")
        scraped = parse_metrics(worker.metrics_text())
    assert resp.status_code == 500
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "server_error"
    assert sample(scraped, "vllm:generation_tokens_total", model_name="mock-llama") == 0
