"""EndpointSlice discovery: a gateway process watching a fake Kubernetes API follows ready pods at once."""

from __future__ import annotations

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.gateway.endpointslices import service_of
from services.gateway.process import gateway, write_config
from services.mock_worker.process import mock_worker
from tests.services.gateway.conftest import KEYS, tenant

WORKER = "http://llama.tenant-a.svc.cluster.local:8000"
TOKEN = "fake-service-account-token"


def endpoint_slice(name: str, ports: dict[str, bool], port: int) -> dict:
    """One slice of Service llama in tenant-a: address -> ready."""
    return {
        "metadata": {"name": name, "namespace": "tenant-a", "labels": {"kubernetes.io/service-name": "llama"}},
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready}} for address, ready in ports.items()],
    }


class FakeApi:
    """LIST and WATCH of endpointslices, with the bearer token checked; events pushed by the test."""

    def __init__(self, initial: list[dict]) -> None:
        self.items = initial
        self.watchers: list[queue.Queue] = []
        self.auth: list[str | None] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                api.auth.append(self.headers.get("authorization"))
                if self.headers.get("authorization") != f"Bearer {TOKEN}":
                    self.send_response(401)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if "watch=1" not in self.path:
                    body = json.dumps(
                        {"kind": "EndpointSliceList", "metadata": {"resourceVersion": "7"}, "items": api.items}
                    )
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body.encode())
                    return
                events: queue.Queue = queue.Queue()
                api.watchers.append(events)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                while True:
                    event = events.get()
                    if event is None:
                        self.wfile.write(b"0\r\n\r\n")
                        return
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def push(self, kind: str, item: dict) -> None:
        for events in self.watchers:
            events.put({"type": kind, "object": item})

    def close(self) -> None:
        for events in self.watchers:
            events.put(None)
        self.server.shutdown()


def test_service_urls_name_their_service() -> None:
    assert service_of(WORKER) == ("tenant-a", "llama", 8000)
    assert service_of("http://llama.tenant-a.svc:9000") == ("tenant-a", "llama", 9000)
    assert service_of("http://127.0.0.1:8000") is None
    assert service_of("http://llama.example.com:8000") is None


def served(pod) -> float:
    for family in text_string_to_metric_families(pod.metrics_text()):
        for s in family.samples:
            if s.name == "vllm:e2e_request_latency_seconds_count":
                return s.value
    return 0.0


def picks(gw) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(httpx.get(f"{gw.metrics_url}/metrics").text):
        for s in family.samples:
            if s.name == "gateway_picker_picks_total":
                found[s.labels["pod"]] = s.value
    return found


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def two_pods():
    flags = ["--model", "llama", "--slots", "8", "--decode-seconds-per-token", "0", "--log-level", "warning"]
    with mock_worker(*flags) as a, mock_worker(*flags) as b:
        yield a, b


def test_ready_pods_from_the_watch_and_unready_ones_leave_at_once(tmp_path, two_pods) -> None:
    a, b = two_pods
    # Both mock pods listen on 127.0.0.1 under different ports: one slice per pod, as for two ports.
    slice_a = endpoint_slice("llama-a", {"127.0.0.1": True}, a.port)
    slice_b = endpoint_slice("llama-b", {"127.0.0.1": False}, b.port)
    api = FakeApi([slice_a, slice_b])
    token = tmp_path / "token"
    token.write_text(TOKEN)
    doc = {
        "tenants": {
            "acme": tenant(
                [KEYS["acme"]], ["llama"], {"llama": WORKER},
                {"llama": {"strategy": "direct", "primary": "llama", "picker": "round-robin"}},
            )
        }
    }  # fmt: skip
    try:
        with (
            gateway(write_config(doc, tmp_path), None, kubernetes_api=api.url, kubernetes_token_file=str(token)) as gw,
            httpx.Client(base_url=gw.url, timeout=10) as client,
        ):

            def ask() -> int:
                body = {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
                return client.post(
                    "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEYS['acme']}"}
                ).status_code

            # Only a is ready: the Service URL (which does not resolve) is never used.
            wait_for(lambda: api.watchers)
            assert [ask() for _ in range(4)] == [200] * 4
            assert picks(gw) == {}  # one pod: nothing to pick between
            assert (served(a), served(b)) == (4, 0)
            # b turns ready: both share the traffic.
            api.push("MODIFIED", endpoint_slice("llama-b", {"127.0.0.1": True}, b.port))
            time.sleep(0.3)
            assert [ask() for _ in range(4)] == [200] * 4
            assert picks(gw) == {a.url: 2, b.url: 2}
            # a turns unready: from the next request on, only b.
            api.push("MODIFIED", endpoint_slice("llama-a", {"127.0.0.1": False}, a.port))
            time.sleep(0.3)
            assert [ask() for _ in range(4)] == [200] * 4
            assert picks(gw)[a.url] == 2
            assert (served(a), served(b)) == (6, 6)
            # b's slice is deleted and a is ready again.
            api.push("DELETED", slice_b)
            api.push("MODIFIED", slice_a)
            time.sleep(0.3)
            assert [ask() for _ in range(2)] == [200] * 2
            assert (served(a), served(b)) == (8, 6)
            assert all(header == f"Bearer {TOKEN}" for header in api.auth)
    finally:
        api.close()
