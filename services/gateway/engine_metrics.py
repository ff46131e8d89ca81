"""Read each pod's engine queue and KV-cache use from its /metrics, every GATEWAY_PICKER_SCRAPE_SECONDS.

The picker needs fresher numbers than Prometheus' 15-30 s scrape: queues change within a second.
Only the few series the picker reads are parsed, by their vLLM and SGLang names (summed over
model_name). A pod that does not answer keeps scrape=False, so it counts as unknown, not as idle.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from services.gateway.picker import Picker

LOG = logging.getLogger("gateway")

WAITING = (b"vllm:num_requests_waiting", b"sglang:num_queue_reqs")
RUNNING = (b"vllm:num_requests_running", b"sglang:num_running_reqs")
# vllm:gpu_cache_usage_perc is the name before vLLM's v1 engine; both are read.
KV = (b"vllm:kv_cache_usage_perc", b"vllm:gpu_cache_usage_perc", b"sglang:token_usage")
PREFIXES = (b"vllm:", b"sglang:")


def parse(text: bytes) -> tuple[float, float, float] | None:
    """(waiting, running, KV-cache use) from a Prometheus text exposition; None without any of them."""
    waiting = running = kv = 0.0
    seen = False
    for line in text.split(b"\n"):
        if not line.startswith(PREFIXES):
            continue
        name, brace, rest = line.partition(b"{")
        if brace:
            rest = rest.rpartition(b"}")[2]
        else:
            name, _, rest = line.partition(b" ")
        try:
            value = float(rest.split()[0])
        except (IndexError, ValueError):
            continue
        if name in WAITING:
            waiting += value
        elif name in RUNNING:
            running += value
        elif name in KV:
            kv = max(kv, value)
        else:
            continue
        seen = True
    return (waiting, running, kv) if seen else None


async def fetch(url: str, timeout: float) -> bytes:
    """GET {url}/metrics over HTTP/1.0: the server closes, so no chunked framing or pooling is needed."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname, port, ssl=parts.scheme == "https" or None), timeout
    )
    try:
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: %s\r\nAccept: text/plain\r\n\r\n" % parts.netloc.encode())
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    return body


async def scrape_once(picker: Picker, urls: set[str], timeout: float) -> None:
    async def one(url: str) -> None:
        pod = picker.pod(url)
        # The engine counts this replica's requests as they were when it answered, some time
        # between here and the reply: any of those in flight now, or sent meanwhile, may be in its
        # count. Taking them all off keeps a request that finished during the scrape from showing
        # as another client's load until the next scrape, where the load bound and the rule that
        # keeps one-at-a-time requests on a warm pod would act on it.
        inflight, sent = pod.inflight, pod.sent
        try:
            found = parse(await fetch(url, timeout))
        except (TimeoutError, OSError, ConnectionError, ValueError):
            pod.scraped = False
            return
        if found is None:
            pod.scraped = False
            return
        pod.waiting, pod.running, pod.kv = found
        pod.others = max(0.0, pod.waiting + pod.running - (inflight + pod.sent - sent))
        pod.scraped = True

    await asyncio.gather(*(one(url) for url in urls))


async def scrape_forever(picker: Picker, pods_now, interval: float) -> None:
    """Until cancelled: every `interval`, read every pod `pods_now()` names."""
    while True:
        try:
            await scrape_once(picker, pods_now(), timeout=max(interval * 2, 0.5))
        except Exception:  # noqa: BLE001 - the picker must keep its last numbers, whatever happened
            LOG.exception("engine metrics scrape failed")
        await asyncio.sleep(interval)
