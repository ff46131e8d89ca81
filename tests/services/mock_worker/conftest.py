"""Fixtures: the mock worker as a real subprocess and an openai client for it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from services.mock_worker.process import RunningService, run_mock_worker
from tests.services.mock_worker.mock_worker_scrape import MODELS


@pytest.fixture(scope="module")
def worker() -> Iterator[RunningService]:
    """A vLLM-flavoured worker serving two models, with small but real decode delays."""
    with run_mock_worker(models=MODELS, slots=4, prefill_seconds=0.001, decode_seconds_per_token=0.001) as proc:
        yield proc


@pytest.fixture
def client(worker: RunningService) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=worker.openai_base_url, api_key="unused", max_retries=0, timeout=10) as c:
        yield c
