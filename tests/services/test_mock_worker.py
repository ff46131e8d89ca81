"""The mock worker as a real process, driven by the official openai client."""

from __future__ import annotations

import re
import threading
import time

import httpx
import openai
import pytest

from services.mock_worker.process import mock_worker


def metric(text: str, name: str, model: str) -> float:
    match = re.search(rf'^{re.escape(name)}{{model_name="{re.escape(model)}"}} ([0-9.e+-]+)$', text, re.M)
    assert match, f"{name} for {model} not in /metrics"
    return float(match.group(1))


@pytest.fixture(scope="module")
def worker():
    with mock_worker("--model", "mock-llama", "--model", "mock-qwen", "--slots", "2", "--decode-seconds-per-token", "0.002") as service:
        yield service


@pytest.fixture
def client(worker):
    return openai.OpenAI(base_url=f"{worker.url}/v1", api_key="unused", max_retries=0)


def test_chat_completion_plain(client):
    response = client.chat.completions.create(
        model="mock-llama", messages=[{"role": "user", "content": "say four words please"}], max_tokens=5
    )
    assert response.choices[0].message.role == "assistant"
    assert len(response.choices[0].message.content.split()) == 5
    assert response.usage.prompt_tokens == 4 and response.usage.completion_tokens == 5
    assert response.usage.total_tokens == 9


def test_chat_completion_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model="mock-qwen",
        messages=[{"role": "user", "content": "stream"}],
        max_tokens=7,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 7
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 7
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_streaming_without_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="mock-llama", messages=[{"role": "user", "content": "x"}], max_tokens=2, stream=True))
    assert all(c.usage is None for c in chunks)


def test_text_completions_plain_and_streaming(client):
    response = client.completions.create(model="mock-llama", prompt="once upon", max_tokens=3)
    assert len(response.choices[0].text.split()) == 3 and response.usage.prompt_tokens == 2
    streamed = list(client.completions.create(model="mock-llama", prompt="x", max_tokens=4, stream=True))
    assert len("".join(c.choices[0].text for c in streamed if c.choices).split()) == 4


def test_models_list(client):
    assert sorted(m.id for m in client.models.list()) == ["mock-llama", "mock-qwen"]


def test_unknown_model_and_bad_input_are_openai_errors(client, worker):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    bad = httpx.post(f"{worker.url}/v1/chat/completions", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    missing = httpx.post(f"{worker.url}/v1/chat/completions", json={"model": "mock-llama"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"


def test_queue_depth_rises_under_load_and_drains(worker):
    """With 2 slots and 8 concurrent slow requests, some must wait; afterwards none may."""
    scrape = lambda: httpx.get(f"{worker.url}/metrics").text  # noqa: E731
    tokens_before = metric(scrape(), "vllm:generation_tokens_total", "mock-llama")
    body = {"model": "mock-llama", "messages": [{"role": "user", "content": "load"}], "max_tokens": 40}
    results: list[int] = []

    def send():
        results.append(httpx.post(f"{worker.url}/v1/chat/completions", json=body, timeout=30).status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    peak_waiting = peak_running = 0.0
    deadline = time.monotonic() + 10
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        text = scrape()
        peak_waiting = max(peak_waiting, metric(text, "vllm:num_requests_waiting", "mock-llama"))
        peak_running = max(peak_running, metric(text, "vllm:num_requests_running", "mock-llama"))
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert results == [200] * 8
    assert peak_waiting > 0, "requests never queued"
    assert peak_running <= 2, "more requests ran than there are slots"
    final = scrape()
    assert metric(final, "vllm:num_requests_waiting", "mock-llama") == 0
    assert metric(final, "vllm:num_requests_running", "mock-llama") == 0
    assert metric(final, "vllm:generation_tokens_total", "mock-llama") - tokens_before == 8 * 40


def test_sglang_flavour_exports_sglang_names():
    with mock_worker("--engine", "sglang", "--model", "m") as service:
        httpx.post(f"{service.url}/v1/completions", json={"model": "m", "prompt": "x", "max_tokens": 2})
        text = httpx.get(f"{service.url}/metrics").text
    assert metric(text, "sglang:num_queue_reqs", "m") == 0
    assert metric(text, "sglang:generation_tokens_total", "m") == 2
    assert "vllm:" not in text


def test_failure_rate_one_fails_every_request():
    with mock_worker("--failure-rate", "1.0", "--model", "m") as service:
        response = httpx.post(f"{service.url}/v1/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == 500 and response.json()["error"]["type"] == "server_error"
