"""`platformctl usage`: on a real Prometheus with generated kube-state-metrics, DCGM and gateway
series, and from a kubeconfig against a stand-in API server (the e2e tier runs a real one).

The kind stack: capacity 16 cpu, 32Gi, 8 GPUs; acme (gold, namespace acme), globex (silver,
namespaces globex-dev and globex), initech (bronze).
"""

from __future__ import annotations

import base64
import json
import shutil
import time

import pytest
import yaml
from typer.testing import CliRunner

from components import billing
from infra.cli import app
from infra.kube_client import KubeconfigError, load_kubeconfig, quota_status, resource_quotas
from tests.monitoring.backfill import backfilled_prometheus, counter, gauge
from tests.monitoring.http_stub import serve

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="prometheus missing: run scripts/install-system-packages.sh",
)
H = 3600
END = (int(time.time()) // H - 3) * H  # the report is taken at END, an hour into the history
HISTORY = (END - 2 * H, END + 10 * 60)
GI = 2**30

# (namespace, resource, used, hard)
QUOTAS = [
    ("acme", "requests.cpu", 1.5, 2),
    ("acme", "limits.cpu", 3, 4),
    ("acme", "requests.memory", 2 * GI, 4 * GI),
    ("acme", "limits.memory", 4 * GI, 8 * GI),
    ("acme", "requests.nvidia.com/gpu", 1, 2),
    ("acme", "pods", 3, 10),
    ("globex", "requests.cpu", 0.5, 1),
    ("globex", "requests.nvidia.com/gpu", 1, 1),
    ("globex-dev", "requests.cpu", 0.25, 1),
    ("globex-dev", "requests.nvidia.com/gpu", 0, 1),
]


def quota_series():
    series = []
    for namespace, resource, used, hard in QUOTAS:
        for kind, value in (("used", used), ("hard", hard)):
            labels = {
                "job": "kube-state-metrics",
                "namespace": namespace,
                "resourcequota": "tenant-quota",
                "resource": resource,
                "type": kind,
            }
            series.append(gauge("kube_resourcequota", labels, value, *HISTORY))
    # The PriorityClass quota of acme: zero pods of other tiers' classes, not of the namespace.
    for kind in ("used", "hard"):
        labels = {"job": "kube-state-metrics", "namespace": "acme", "resourcequota": "tenant-priority-classes"}
        series.append(gauge("kube_resourcequota", {**labels, "resource": "pods", "type": kind}, 0, *HISTORY))
    # A tenant's exporter claiming globex uses everything: not kube-state-metrics.
    forged = {"job": "acme-exporter", "namespace": "globex", "resourcequota": "q", "resource": "requests.cpu"}
    series.append(gauge("kube_resourcequota", {**forged, "type": "used"}, 1000, *HISTORY))
    return series


def util(gpu: str, value: float, namespace: str = "acme", job: str = "nvidia-dcgm-exporter"):
    labels = {"job": job, "namespace": namespace, "pod": f"w-{gpu}", "gpu": gpu, "container": "engine"}
    return gauge("DCGM_FI_DEV_GPU_UTIL", labels, value, *HISTORY)


SERIES = [
    *quota_series(),
    util("0", 70),
    util("1", 30),
    util("2", 100, namespace="globex", job="globex-exporter"),  # not the platform's exporter
    # 100 prompt tokens per scrape (every 15 s), all the time: 240 scrapes in the hour before END.
    counter(
        "gateway_tokens_total",
        {
            "job": "gateway",
            "namespace": "platform-gateway",
            "pod": "gw-1",
            "tenant": "acme",
            "model": "m",
            "kind": "prompt",
        },
        lambda t: 100 * ((t - HISTORY[0]) // 15),
        *HISTORY,
    ),
]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    work = tmp_path_factory.mktemp("usage")
    group = billing.billing_group("platform-gateway", {})
    with backfilled_prometheus(work, SERIES, [group], *HISTORY) as url:
        yield url


def usage(*args):
    return CliRunner().invoke(app, ["usage", "--stack", "kind", *args])


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@needs_prometheus
def test_usage_json_per_tenant_and_namespace(prometheus):
    result = usage("--prometheus", prometheus, "--at", _iso(END), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    tenants = {t["tenant"]: t for t in document["tenants"]}
    acme = tenants["acme"]
    (ns,) = acme["namespaces"]
    assert ns["namespace"] == "acme"
    assert ns["quota"]["requests.cpu"] == {"used": 1.5, "hard": 2}
    assert ns["quota"]["limits.memory"] == {"used": 4 * GI, "hard": 8 * GI}
    assert ns["quota"]["pods"] == {"used": 3, "hard": 10}
    assert ns["gpu_utilization_percent"] == 50  # (70 + 30) / 2; globex's own exporter is ignored
    # Shares of 16 cpu, 32Gi and 8 GPUs.
    assert acme["share_of_cluster"] == {"cpu": 1.5 / 16, "memory": 2 / 32, "gpu": 1 / 8}
    assert acme["tokens"] == {"prompt": 240 * 100, "completion": 0}
    globex = tenants["globex"]
    assert [n["namespace"] for n in globex["namespaces"]] == ["globex-dev", "globex"]
    # 0.25 + 0.5 cpu over both namespaces; the forged 1000 is not kube-state-metrics'.
    assert globex["share_of_cluster"]["cpu"] == pytest.approx(0.75 / 16)
    assert globex["share_of_cluster"]["gpu"] == pytest.approx(1 / 8)
    assert globex["namespaces"][1]["gpu_utilization_percent"] is None


@needs_prometheus
def test_usage_table_and_one_tenant(prometheus):
    result = usage("--prometheus", prometheus, "--at", _iso(END), "--tenant", "acme")
    assert result.exit_code == 0, result.output
    assert "1.5 / 2" in result.output and "50%" in result.output and "12.5%" in result.output
    assert "globex" not in result.output


def test_usage_bad_input_exits_2():
    unknown = usage("--prometheus", "http://127.0.0.1:9", "--tenant", "nobody")
    assert unknown.exit_code == 2 and "--tenant 'nobody'" in unknown.output
    both = usage("--prometheus", "http://127.0.0.1:9", "--kubeconfig", "k")
    assert both.exit_code == 2 and "exactly one" in both.output


# --- kubeconfig: parsing, and ResourceQuota status from an API server ---


def _kubeconfig(tmp_path, server, **user):
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "e2e",
        "contexts": [{"name": "e2e", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path, doc


def test_kubeconfig_data_and_file_fields(tmp_path):
    (tmp_path / "ca.pem").write_bytes(b"CA")
    path, doc = _kubeconfig(
        tmp_path,
        "https://127.0.0.1:6443/",
        **{"client-certificate-data": base64.b64encode(b"CERT").decode(), "client-key": "key.pem"},
    )
    doc["clusters"][0]["cluster"]["certificate-authority"] = "ca.pem"
    (tmp_path / "key.pem").write_bytes(b"KEY")
    path.write_text(yaml.safe_dump(doc))
    cluster = load_kubeconfig(path)
    assert cluster.server == "https://127.0.0.1:6443"
    assert (cluster.ca_pem, cluster.client_cert_pem, cluster.client_key_pem) == (b"CA", b"CERT", b"KEY")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("current-context"), "current-context"),
        (lambda d: d["contexts"][0].update(name="other"), "no context named 'e2e'"),
        (lambda d: d["clusters"][0]["cluster"].pop("server"), "clusters[c].server"),
        (lambda d: d["users"][0]["user"].update({"exec": {}}), "exec"),
        (lambda d: d["users"][0]["user"].update({"client-key-data": "%%"}), "client-key-data: not base64"),
    ],
)
def test_kubeconfig_errors_name_the_key(tmp_path, change, message):
    path, doc = _kubeconfig(tmp_path, "https://x")
    change(doc)
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(KubeconfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_kubeconfig(path)


QUOTA_LIST = {
    "kind": "ResourceQuotaList",
    "items": [
        {
            "metadata": {"name": "tenant-quota", "namespace": "acme"},
            "status": {
                "hard": {"requests.cpu": "2", "requests.memory": "4Gi", "requests.nvidia.com/gpu": "2", "pods": "10"},
                "used": {
                    "requests.cpu": "1500m",
                    "requests.memory": "2Gi",
                    "requests.nvidia.com/gpu": "1",
                    "pods": "3",
                },
            },
        },
        # The PriorityClass quota: scoped to other tiers' classes, so its `pods: 0` bounds only those pods.
        {
            "metadata": {"name": "tenant-priority-classes", "namespace": "acme"},
            "spec": {
                "hard": {"pods": "0"},
                "scopeSelector": {
                    "matchExpressions": [
                        {"scopeName": "PriorityClass", "operator": "In", "values": ["platform-critical"]}
                    ]
                },
            },
            "status": {"hard": {"pods": "0"}, "used": {"pods": "0"}},
        },
    ],
}


def test_quota_status_parses_quantities():
    used, hard = quota_status(QUOTA_LIST["items"])
    assert used == {"requests.cpu": 1.5, "requests.memory": 2 * GI, "requests.nvidia.com/gpu": 1, "pods": 3}
    assert hard["requests.memory"] == 4 * GI
    assert hard["pods"] == 10, "a scoped quota bounds only the pods it selects"


def test_usage_from_the_api_server(tmp_path):
    seen = []

    def handler(path, _params):
        seen.append(path)
        if path == "/api/v1/namespaces/acme/resourcequotas":
            return 200, "application/json", json.dumps(QUOTA_LIST).encode()
        return 404, "application/json", b'{"kind": "Status", "code": 404}'

    with serve(handler) as (url, _):
        path, _ = _kubeconfig(tmp_path, url, token="t0ken")
        quotas = resource_quotas(load_kubeconfig(path), ["acme", "missing"])
        assert quotas["missing"] == [] and len(quotas["acme"]) == 2
        result = usage("--kubeconfig", str(path), "--json")
    assert result.exit_code == 0, result.output
    acme = next(t for t in json.loads(result.output)["tenants"] if t["tenant"] == "acme")
    assert acme["namespaces"][0]["quota"]["requests.cpu"] == {"used": 1.5, "hard": 2}
    assert acme["share_of_cluster"]["gpu"] == 1 / 8 and acme["tokens"] is None


def test_usage_a_bad_kubeconfig_is_exit_2_an_unreachable_server_exit_1(tmp_path):
    path, doc = _kubeconfig(tmp_path, "http://127.0.0.1:9", token="t")
    unreachable = usage("--kubeconfig", str(path))
    assert unreachable.exit_code == 1 and "cannot reach the API server" in unreachable.output
    doc.pop("current-context")
    path.write_text(yaml.safe_dump(doc))
    bad = usage("--kubeconfig", str(path))
    assert bad.exit_code == 2 and f"{path}: current-context: not set" in bad.output
