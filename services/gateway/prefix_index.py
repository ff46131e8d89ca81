"""Which pod has probably cached which prompt prefix: block hashes of prompts, as the gateway sent them.

The gateway does not tokenize, so a block is a fixed number of bytes of the prompt's text, and
block i's hash chains all bytes before it (a running CRC-32), so a block matches only after the
same whole prefix, as in the engines' own block caches. After a request goes to a pod, its blocks
are recorded for that pod; a later prompt's match on a pod is the number of leading blocks recorded
for it. This is an estimate (the engine may have evicted them); the index is bounded and forgets
least recently used blocks first, as the engines do.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict

import orjson

BLOCK_BYTES = 512  # about 128 tokens of English text: coarse, but hashing stays cheap per request
MAX_BLOCKS = 64  # prompts are hashed up to 32 KiB: enough to tell shared system prompts and histories apart


def prompt_text(body: dict) -> bytes:
    """The prompt as the engine's chat template sees it, near enough: roles and contents in order."""
    messages = body.get("messages")
    if messages is None:
        prompt = body.get("prompt")
        return prompt.encode() if isinstance(prompt, str) else orjson.dumps(prompt)
    parts = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        role = message.get("role")
        parts.append(f"{role if isinstance(role, str) else ''}\n")
        parts.append(content if isinstance(content, str) else orjson.dumps(content).decode())
        parts.append("\n")
    return "".join(parts).encode()


def block_hashes(text: bytes) -> list[int]:
    """Chained hashes of the text's full blocks (a partial last block is left out, as engines do)."""
    hashes = []
    running = 0
    end = min(len(text) - len(text) % BLOCK_BYTES, MAX_BLOCKS * BLOCK_BYTES)
    view = memoryview(text)
    for start in range(0, end, BLOCK_BYTES):
        running = zlib.crc32(view[start : start + BLOCK_BYTES], running)
        hashes.append(running)
    return hashes


class PrefixIndex:
    def __init__(self, max_blocks: int) -> None:
        self.max_blocks = max_blocks
        self._holders: OrderedDict[int, set[str]] = OrderedDict()
        self.blocks_of: dict[str, int] = {}  # pod -> blocks recorded for it: how much it is asked to cache

    def matches(self, hashes: list[int], pods: list[str]) -> dict[str, int]:
        """Per pod, how many of the leading blocks it was sent before."""
        matched = dict.fromkeys(pods, 0)
        alive = set(pods)
        holders_of = self._holders
        for depth, h in enumerate(hashes, 1):
            holders = holders_of.get(h)
            if holders is None:
                break
            alive &= holders
            if not alive:
                break
            for pod in alive:
                matched[pod] = depth
        return matched

    def record(self, hashes: list[int], pod: str) -> None:
        holders_of = self._holders
        added = 0
        for h in hashes:
            holders = holders_of.get(h)
            if holders is None:
                holders_of[h] = {pod}
                added += 1
            else:
                if pod not in holders:
                    holders.add(pod)
                    added += 1
                holders_of.move_to_end(h)
        blocks_of = self.blocks_of
        blocks_of[pod] = blocks_of.get(pod, 0) + added
        while len(holders_of) > self.max_blocks:
            for holder in holders_of.popitem(last=False)[1]:
                blocks_of[holder] -= 1

    def forget_pod(self, pod: str) -> None:
        """A pod that left the pool: a new pod at the same address starts with an empty cache."""
        for holders in self._holders.values():
            holders.discard(pod)
        self.blocks_of.pop(pod, None)

    def __len__(self) -> int:
        return len(self._holders)
