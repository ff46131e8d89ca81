"""A block-granular prefix cache with LRU eviction, the way vLLM's automatic prefix caching works.

A prompt's tokens are cut into blocks of `block_size`; block i is identified by a hash of its own
tokens chained with block i-1's hash, so a block can only be reused after the same whole prefix.
Only full blocks are cached (as in vLLM). A lookup counts the leading blocks already present; the
engine then prefills only the rest, so time to first token follows the uncached tokens.

KV-cache use is what vLLM reports as `kv_cache_usage_perc`: the share of the capacity held by
running sequences (prompt plus generated tokens). Cached blocks that no running sequence holds are
free to evict, so they do not count as used. A running sequence's full prompt blocks are the cached
blocks themselves (shared, as in vLLM); only its other tokens (the partial last block and what it
generates) take room from the cache, and cached blocks are then evicted least recently used first.
A running sequence's blocks were touched last, so they are the last to go. A prompt's blocks are
touched last block first, so within a chain the tail is evicted before its prefix (vLLM frees a
request's blocks in reverse order for this reason, and SGLang's radix cache evicts leaves first):
evicting a chain's first block would make every block after it unreachable while it still takes room.
"""

from __future__ import annotations

from collections import OrderedDict


def block_hashes(tokens: list[str], block_size: int) -> list[int]:
    """Chained hashes of the prompt's full blocks (a partial last block is never cached)."""
    hashes = []
    previous = 0
    for start in range(0, len(tokens) - block_size + 1, block_size):
        previous = hash((previous, *tokens[start : start + block_size]))
        hashes.append(previous)
    return hashes


class PrefixCache:
    def __init__(self, capacity_tokens: int, block_size: int) -> None:
        self.block_size = block_size
        self.capacity_blocks = capacity_tokens // block_size
        self.capacity_tokens = capacity_tokens
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self.in_use_tokens = 0  # held by running sequences
        self.private_tokens = 0  # of those, not in full prompt blocks (generated, partial blocks)
        self.queries = 0  # prompt tokens looked up (vLLM counts tokens, not requests)
        self.hits = 0  # of those, tokens found cached

    def lookup(self, hashes: list[int], prompt_tokens: int) -> int:
        """Cached tokens at the start of this prompt; the blocks found become most recently used."""
        blocks = self._blocks
        found = 0
        for h in hashes:
            if h not in blocks:
                break
            found += 1
        for h in reversed(hashes[:found]):
            blocks.move_to_end(h)
        cached = found * self.block_size
        self.queries += prompt_tokens
        self.hits += cached
        return cached

    def insert(self, hashes: list[int]) -> None:
        """Keep the prompt's blocks after its prefill, evicting the least recently used beyond capacity."""
        room = self.capacity_blocks - (self.private_tokens + self.block_size - 1) // self.block_size
        for h in reversed(hashes):
            self._blocks[h] = None
            self._blocks.move_to_end(h)
        while self._blocks and len(self._blocks) > max(0, room):
            self._blocks.popitem(last=False)

    def hold(self, tokens: int, private: int) -> None:
        self.in_use_tokens += tokens
        self.private_tokens += private

    def free(self, tokens: int, private: int) -> None:
        self.in_use_tokens -= tokens
        self.private_tokens -= private

    @property
    def cached_blocks(self) -> int:
        return len(self._blocks)

    def usage(self) -> float:
        if not self.capacity_tokens:
            return 0.0
        return min(1.0, self.in_use_tokens / self.capacity_tokens)
