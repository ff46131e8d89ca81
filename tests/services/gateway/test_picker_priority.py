"""Priorities with real processes: sheddable requests are refused while every pod's engine queue is long."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

from services.gateway.process import gateway, write_config
from services.mock_worker.process import mock_worker
from tests.services.gateway.conftest import KEYS
from tests.services.gateway.test_picker import picker_document

BODY = {"model": "llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}


def test_sheddable_requests_are_shed_while_the_engines_are_saturated(tmp_path) -> None:
    flags = ["--model", "llama", "--slots", "1", "--prefill-seconds", "0.25", "--decode-seconds-per-token", "0"]
    with contextlib.ExitStack() as stack:
        pods = [stack.enter_context(mock_worker(*flags, "--log-level", "warning")) for _ in range(2)]
        path = write_config(picker_document([p.url for p in pods], llama="least-load"), tmp_path)
        service = stack.enter_context(gateway(path, None, picker_scrape_seconds=0.05, picker_saturated_queue=3))
        auth = {"authorization": f"Bearer {KEYS['acme']}"}

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                # Traffic that does not pass the gateway fills both engines' queues (5 waiting each).
                backlog = [
                    asyncio.create_task(client.post(f"{pod.url}/v1/chat/completions", json=BODY))
                    for pod in pods
                    for _ in range(6)
                ]
                await asyncio.sleep(0.4)
                gw = f"{service.url}/v1/chat/completions"
                shed = await client.post(gw, json=BODY, headers={**auth, "x-priority": "sheddable"})
                assert shed.status_code == 429, shed.text
                assert shed.headers["retry-after"] == "1"
                assert shed.json()["error"]["code"] == "engines_saturated"
                wrong = await client.post(gw, json=BODY, headers={**auth, "x-priority": "urgent"})
                assert wrong.status_code == 400
                # A critical (and a standard) request is served, saturated or not.
                critical = await client.post(gw, json=BODY, headers={**auth, "x-priority": "critical"})
                assert critical.status_code == 200
                await asyncio.gather(*backlog)
                await asyncio.sleep(0.3)  # the next scrapes see the queues empty
                again = await client.post(gw, json=BODY, headers={**auth, "x-priority": "sheddable"})
                assert again.status_code == 200

        started = time.monotonic()
        asyncio.run(scenario())
        assert time.monotonic() - started < 20
        metrics = httpx.get(f"{service.metrics_url}/metrics").text
        assert 'gateway_rate_limited_total{reason="saturated",tenant="acme"} 1.0' in metrics
