"""A real Prometheus scraping real mock workers and a real gateway, evaluating the platform's rules.

GPU and kube-state-metrics series come from a static exporter standing in for fake-gpu-operator's
status exporter and kube-state-metrics (same metric names and labels); everything else is live.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import shutil
import subprocess
import time

import httpx
import pytest
import yaml

from components.metrics_catalog import adapter_rules
from components.monitoring_rules import rule_groups
from infra.config import Pricing, Thresholds
from services.gateway.process import gateway, redis_server, write_config
from services.mock_worker.process import free_port, mock_worker, stop, wait_healthy
from tests.monitoring.http_stub import serve
from tests.monitoring.test_dashboards import DASHBOARDS, queries, substitute

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing: run scripts/install-system-packages.sh")

STATIC = """\
DCGM_FI_DEV_GPU_UTIL{gpu="0",namespace="acme",pod="w-acme",container="engine"} 70
DCGM_FI_DEV_GPU_UTIL{gpu="1",namespace="globex",pod="w-globex",container="engine"} 30
DCGM_FI_DEV_FB_USED{gpu="0",namespace="acme",pod="w-acme",container="engine"} 2048
DCGM_FI_DEV_FB_USED{gpu="1",namespace="globex",pod="w-globex",container="engine"} 1024
kube_pod_container_resource_requests{job="kube-state-metrics",namespace="acme",pod="w-acme",uid="u-acme",container="engine",node="gpu-1",resource="nvidia_com_gpu",unit="integer"} 1
kube_pod_container_resource_requests{job="kube-state-metrics",namespace="globex",pod="w-globex",uid="u-globex",container="engine",node="gpu-1",resource="nvidia_com_gpu",unit="integer"} 1
"""


def static_exporter():
    return serve(lambda _path, _params: (200, "text/plain; version=0.0.4", STATIC.encode()))


def target(url: str) -> str:
    return url.split("://", 1)[1]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    work = tmp_path_factory.mktemp("prom")
    keys = {"acme": "sk-int-acme", "globex": "sk-int-globex"}
    with contextlib.ExitStack() as stack:
        acme_worker = stack.enter_context(
            mock_worker("--model", "llama", "--slots", "2", "--decode-seconds-per-token", "0.01")
        )
        globex_worker = stack.enter_context(
            mock_worker("--model", "qwen", "--slots", "2", "--engine", "sglang", "--decode-seconds-per-token", "0.01")
        )
        redis = stack.enter_context(redis_server())
        doc = {
            "tenants": {
                name: {
                    "tier": "gold",
                    "weight": 1,
                    "keyHashes": [hashlib.sha256(key.encode()).hexdigest()],
                    "models": [model],
                    "limits": {"rpm": 100000, "tpm": 100000000, "maxConcurrency": 8, "maxQueue": 64},
                    "upstreams": {"w": worker.url},
                    "routes": {model: {"strategy": "direct", "primary": "w"}},
                }
                for name, key, model, worker in (
                    ("acme", keys["acme"], "llama", acme_worker),
                    ("globex", keys["globex"], "qwen", globex_worker),
                )
            }
        }
        gw = stack.enter_context(gateway(write_config(doc, work), redis.url))
        exporter = target(stack.enter_context(static_exporter())[0])
        groups = rule_groups(
            {"acme": "acme", "globex": "globex"},
            {"acme": "gold", "globex": "gold"},
            Thresholds(),
            Pricing(),
            "platform-gateway",
        )
        (work / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(work / "rules.yaml")],
            "scrape_configs": [
                {
                    "job_name": "workers",
                    "static_configs": [
                        {"targets": [target(acme_worker.url)], "labels": {"namespace": "acme", "pod": "w-acme"}},
                        {"targets": [target(globex_worker.url)], "labels": {"namespace": "globex", "pod": "w-globex"}},
                    ],
                },
                {
                    "job_name": "gateway",
                    "static_configs": [
                        {
                            "targets": [target(gw.metrics_url)],
                            "labels": {"namespace": "platform-gateway", "service": "gateway", "pod": "gw-1"},
                        }
                    ],
                },
                {"job_name": "gpu-and-kube-state", "honor_labels": True, "static_configs": [{"targets": [exporter]}]},
            ],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        prometheus = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(stop, prometheus)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(f"{url}/-/ready", prometheus, timeout=30)

        def load(tenant, model, requests=40):
            def one(_):
                return httpx.post(
                    f"{gw.url}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {keys[tenant]}"},
                    json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20},
                    timeout=30,
                ).status_code

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                return list(pool.map(one, range(requests)))

        # Two rounds a few seconds apart, so rates have samples on both sides.
        for _ in range(2):
            assert set(load("acme", "llama") + load("globex", "qwen")) == {200}
            time.sleep(2.5)
        yield url


def query(url: str, expr: str, wait: float = 15) -> list[dict]:
    deadline = time.monotonic() + wait
    while True:
        result = httpx.get(f"{url}/api/v1/query", params={"query": expr}).json()
        assert result["status"] == "success", result
        if result["data"]["result"] or time.monotonic() > deadline:
            return result["data"]["result"]
        time.sleep(0.5)


def by(result, label):
    return {sample["metric"].get(label): float(sample["value"][1]) for sample in result}


def test_recording_rules_have_data_per_tenant(platform):
    for record in (
        "tenant:gateway_requests:rate5m",
        "tenant:gpu_allocated:sum",
        "tenant:gpu_utilization:avg",
        "tenant:gateway_request_duration_seconds:p99",
        "tenant:cost_per_hour:sum",
    ):
        values = by(query(platform, record, wait=75 if "cost" in record else 15), "tenant")
        assert set(values) == {"acme", "globex"}, (record, values)
    assert by(query(platform, "tenant:gpu_utilization:avg"), "tenant") == {"acme": 70.0, "globex": 30.0}
    tokens = query(platform, "tenant:gateway_tokens:rate5m")
    assert {(s["metric"]["tenant"], s["metric"]["kind"]) for s in tokens} >= {
        ("acme", "completion"),
        ("globex", "completion"),
    }
    queues = by(query(platform, "namespace:inference_queue_depth:sum"), "namespace")
    assert set(queues) == {"acme", "globex"}, "vLLM and SGLang queues are both normalised"


def test_adapter_queries_return_per_pod_queue_depth(platform):
    rule = adapter_rules()["custom"][0]
    for namespace, pod in (("acme", "w-acme"), ("globex", "w-globex")):
        expr = (
            rule["metricsQuery"]
            .replace("<<.GroupBy>>", "pod")
            .replace("<<.LabelMatchers>>", f'namespace="{namespace}",pod=~"{pod}"')
        )
        assert by(query(platform, expr), "pod").keys() == {pod}
    # The gateway's HPA metric: requests in flight per gateway pod, as the adapter computes it.
    [gateway_rule] = [r for r in adapter_rules()["custom"] if r["name"]["as"] == "gateway_inflight_requests"]
    series = query(platform, gateway_rule["seriesQuery"])
    assert series, "the gateway exports the per-pod in-flight gauge the adapter reads"


def _patience(expr: str) -> float:
    # The billing group runs once a minute, at an offset of its own within the minute.
    return 2 if "rate_limited_total" in expr else 75 if "billed_" in expr else 15


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_queries_return_data(platform, path):
    empty = [
        expr
        for expr in queries(path)
        if not query(platform, substitute(expr).replace("$__range_s", "60"), wait=_patience(expr))
    ]
    # The 429 panels stay empty when nobody was limited; everything else must show data.
    assert [e for e in empty if "rate_limited_total" not in e] == []
