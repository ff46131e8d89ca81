"""The OpenAI-compatible API, driven by the official openai client."""

from __future__ import annotations

import httpx
import openai
import pytest

from services.mock_worker.process import run_mock_worker
from tests.services.mock_worker.mock_worker_scrape import MODELS

PROMPT = [{"role": "user", "content": "Summarise the capacity plan for the gold tenant."}]


def test_models_list_names_every_served_model(client: openai.OpenAI) -> None:
    listed = client.models.list()
    assert sorted(m.id for m in listed.data) == sorted(MODELS)
    assert all(m.object == "model" for m in listed.data)


def test_chat_completion_honours_max_tokens_and_reports_usage(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="mock-llama", messages=PROMPT, max_tokens=7)
    assert resp.object == "chat.completion"
    assert resp.model == "mock-llama"
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert len(choice.message.content.split()) == 7
    assert choice.finish_reason == "length"
    assert resp.usage.completion_tokens == 7
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 7


def test_prompt_tokens_grow_with_the_prompt(client: openai.OpenAI) -> None:
    short = client.chat.completions.create(
        model="mock-llama", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
    )
    long = client.chat.completions.create(
        model="mock-llama", max_tokens=1, messages=[{"role": "user", "content": "hi " * 400}]
    )
    assert long.usage.prompt_tokens > short.usage.prompt_tokens + 100


def test_default_output_length_is_small(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="mock-mistral", messages=PROMPT)
    assert resp.model == "mock-mistral"
    assert 1 <= resp.usage.completion_tokens <= 64


def test_chat_stream_matches_plain_answer_and_ends_with_usage(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="mock-llama", messages=PROMPT, max_tokens=5)
    stream = client.chat.completions.create(
        model="mock-llama", messages=PROMPT, max_tokens=5, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == 5
    assert last.usage.prompt_tokens == plain.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_include_usage_has_no_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="mock-llama", messages=PROMPT, max_tokens=3, stream=True))
    assert all(c.choices for c in chunks)
    assert all(getattr(c, "usage", None) is None for c in chunks)


def test_stream_is_sse_terminated_by_done(worker) -> None:
    body = {"model": "mock-llama", "prompt": "hello", "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{worker.openai_base_url}/completions", json=body, timeout=10) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line for line in resp.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    assert len(events) == 3 + 1 + 1  # tokens, finish chunk, [DONE]


def test_completion_plain_and_stream(client: openai.OpenAI) -> None:
    plain = client.completions.create(model="mock-llama", prompt="Once upon a time", max_tokens=6)
    assert plain.object == "text_completion"
    assert len(plain.choices[0].text.split()) == 6
    assert plain.usage.completion_tokens == 6
    chunks = list(
        client.completions.create(
            model="mock-llama",
            prompt="Once upon a time",
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text
    assert chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_same_request_same_text_seed_changes_it(client: openai.OpenAI) -> None:
    def answer(**kw):
        return client.completions.create(model="mock-llama", prompt="p", max_tokens=8, **kw).choices[0].text

    assert answer() == answer()
    assert answer(seed=1) != answer(seed=2)


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-nope", messages=PROMPT)
    assert err.value.code == "model_not_found"


def test_bad_json_is_400_openai_error(worker) -> None:
    resp = httpx.post(
        f"{worker.openai_base_url}/chat/completions",
        content=b'{"model": ',
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"]


def test_missing_field_is_400_naming_the_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="mock-llama", messages=[])
    assert err.value.status_code == 400
    assert err.value.param == "messages"


def test_health_answers(worker) -> None:
    assert httpx.get(f"{worker.url}/health", timeout=10).status_code == 200


def test_stream_without_decode_time_has_the_same_shape() -> None:
    # With no decode delay the worker sends the whole SSE body at once (benchmark path).
    with run_mock_worker() as fast, openai.OpenAI(base_url=fast.openai_base_url, api_key="unused", max_retries=0) as c:
        plain = c.chat.completions.create(model="mock-llama", messages=PROMPT, max_tokens=4)
        chunks = list(
            c.chat.completions.create(
                model="mock-llama", messages=PROMPT, max_tokens=4, stream=True, stream_options={"include_usage": True}
            )
        )
        text_chunks = list(c.completions.create(model="mock-llama", prompt="x", max_tokens=4, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == plain.choices[0].message.content
    assert chunks[-1].usage.total_tokens == plain.usage.total_tokens
    assert len(text_chunks) == 4 + 1
    assert text_chunks[-1].choices[0].finish_reason == "length"
