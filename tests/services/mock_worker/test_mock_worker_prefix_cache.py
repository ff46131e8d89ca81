"""The prefix cache: reuse cuts time to first token, LRU eviction, and vLLM's cache metrics."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from services.mock_worker.prefix_cache import PrefixCache, block_hashes
from services.mock_worker.process import run_mock_worker
from tests.services.mock_worker.mock_worker_scrape import parse_metrics, sample

LABELS = {"model_name": "mock-llama"}


def words(tag: str, count: int) -> str:
    return " ".join(f"{tag}{i}" for i in range(count))


def test_blocks_chain_so_a_block_is_reused_only_after_the_same_prefix() -> None:
    a = block_hashes(["x"] * 40, 16)
    b = block_hashes(["y"] * 16 + ["x"] * 24, 16)
    assert len(a) == 2  # the partial third block is not cached
    assert a[1] != b[1]  # same tokens in block 1, different prefix


def test_lookup_counts_leading_blocks_and_lru_evicts_the_oldest() -> None:
    cache = PrefixCache(capacity_tokens=64, block_size=16)  # four blocks
    first, second = block_hashes(list("abcdefgh" * 4), 16), block_hashes(list("ijklmnop" * 4), 16)
    assert cache.lookup(first, 32) == 0
    cache.insert(first)
    assert cache.lookup(first, 32) == 32
    cache.insert(second)
    assert cache.lookup(first, 32) == 32  # four blocks fit: both stay; first is now the most recent
    third = block_hashes(list("qrstuvwx" * 4), 16)
    cache.insert(third)  # six blocks wanted, four fit: `second` was used least recently
    assert cache.lookup(second, 32) == 0
    assert cache.lookup(first, 32) == 32
    assert (cache.queries, cache.hits) == (32 * 5, 32 * 3)


def test_eviction_takes_a_chains_tail_before_its_prefix() -> None:
    # As in vLLM and SGLang: the blocks left are still a prefix that a later prompt can hit.
    cache = PrefixCache(capacity_tokens=64, block_size=16)  # four blocks
    history = block_hashes(list("abcdefgh" * 6), 16)  # three blocks
    cache.insert(history)
    cache.insert(block_hashes(list("ijklmnop" * 4), 16))  # five blocks wanted: one goes
    assert cache.lookup(history, 48) == 32  # its last block went, not its first
    longer = block_hashes(list("abcdefgh" * 6) + list("qrstuvwx" * 2), 16)
    assert cache.lookup(longer, 64) == 32


def test_running_sequences_take_room_from_the_cache() -> None:
    cache = PrefixCache(capacity_tokens=64, block_size=16)
    cache.hold(48, 48)  # e.g. generated tokens: none of them in a cached prompt block
    assert cache.usage() == 0.75
    cache.insert(block_hashes(list("abcdefgh" * 4), 16))
    assert cache.cached_blocks == 1
    cache.free(48, 48)
    assert cache.usage() == 0.0


def chat(client: httpx.Client, prompt: str, max_tokens: int = 1) -> float:
    started = time.perf_counter()
    body = {"model": "mock-llama", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    return time.perf_counter() - started


def test_a_cached_prefix_is_prefilled_only_for_its_new_tokens() -> None:
    # 800 tokens at 0.5 ms: 0.4 s uncached; 784 of them cached the second time: about 8 ms.
    flags = ["--prefill-seconds-per-token", "0.0005", "--cache-tokens", "2000", "--block-size", "16"]
    with run_mock_worker(extra_args=flags) as worker, httpx.Client(base_url=worker.url, timeout=10) as client:
        system = words("sys", 784)
        cold = chat(client, system + " " + words("q", 16))
        warm = chat(client, system + " " + words("other", 16))
        assert cold > 0.35 and warm < cold / 4, (cold, warm)
        scraped = parse_metrics(worker.metrics_text())
        assert sample(scraped, "vllm:prefix_cache_queries_total", **LABELS) == 1600
        assert sample(scraped, "vllm:prefix_cache_hits_total", **LABELS) == 784
        # Two other 800-token prompts want 100 of the 125 blocks, and the running one's generated
        # token holds a block: of the 151 blocks wanted, the 27 least recently used go, the two
        # 16-token tails and the system prompt's last 25 blocks. Its first 24 (384 tokens) are left,
        # still a prefix: 416 tokens are prefilled again, not 800.
        chat(client, words("b", 800))
        chat(client, words("c", 800))
        again = chat(client, system + " " + words("q", 16))
        assert warm * 2 < again < cold, (warm, again, cold)
        assert sample(parse_metrics(worker.metrics_text()), "vllm:prefix_cache_hits_total", **LABELS) == 784 + 384


@pytest.mark.parametrize("engine, name", [("vllm", "vllm:kv_cache_usage_perc"), ("sglang", "sglang:token_usage")])
def test_kv_cache_usage_follows_running_sequences(engine: str, name: str) -> None:
    flags = ["--cache-tokens", "1000"]
    with (
        run_mock_worker(engine=engine, slots=4, decode_seconds_per_token=0.02, extra_args=flags) as worker,
        httpx.Client(base_url=worker.url, timeout=10) as client,
    ):
        assert sample(parse_metrics(worker.metrics_text()), name, **LABELS) == 0
        # Two sequences of 100 prompt + 40 generated tokens: 280 of 1000 tokens while they run.
        load = [threading.Thread(target=chat, args=(client, words(t, 100), 40)) for t in "ab"]
        for thread in load:
            thread.start()
        peak = 0.0
        while any(thread.is_alive() for thread in load):
            peak = max(peak, sample(parse_metrics(worker.metrics_text()), name, **LABELS))
            time.sleep(0.05)
        assert peak == pytest.approx(0.28)
        assert sample(parse_metrics(worker.metrics_text()), name, **LABELS) == 0
