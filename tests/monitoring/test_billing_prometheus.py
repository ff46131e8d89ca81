"""Billing on a real Prometheus: backfilled kube-state-metrics and gateway series, the platform's
billing rules evaluated over them, then `platformctl chargeback`, the recording rules' expressions
and the tenant dashboard's cost panel, each compared with figures worked out by hand below.

Prices: 2.50 per GPU-hour, 0.20 and 0.60 per million prompt and completion tokens; gold pays x2,
bronze x0.5, silver x1. Window 1 is the hour (S, S+60m], window 2 the hour after S+2h.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from components import billing
from components.monitoring_rules import chargeback_rules, rule_groups
from infra.cli import app
from infra.config import Pricing, Thresholds
from tests.monitoring.backfill import SCRAPE_SECONDS, backfilled_prometheus, counter, eval_phase, gauge
from tests.monitoring.test_dashboards import DASHBOARDS

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="prometheus missing: run scripts/install-system-packages.sh",
)

PRICING = Pricing(
    gpu_hour=2.5,
    per_million_prompt_tokens=0.2,
    per_million_completion_tokens=0.6,
    tier_multipliers={"gold": 2, "bronze": 0.5},
)
TIERS = {"acme": ("gold", "cc-1001"), "globex": ("silver", "cc-2002"), "initech": ("bronze", "cc-3003")}
GATEWAY_NS = "platform-gateway"
M = 60
H = 3600

# Window 1 starts on a whole hour five hours ago, so that all history is older than the head.
S = (int(time.time()) // H - 5) * H
S2 = S + 2 * H
# Prometheus is down (no scrape, no rule evaluation) for 20 minutes in window 2.
GAP = [(S2 + 20 * M, S2 + 40 * M)]
HISTORY = (S - 2 * H, S + 4 * H)


def ksm_gpus(namespace: str, pod: str, gpus: float, start: float, stop: float, **extra: str):
    labels = {
        "job": "kube-state-metrics",
        "instance": "10.0.0.5:8080",
        "namespace": namespace,
        "pod": pod,
        "uid": f"uid-{pod}",
        "container": "engine",
        "node": "gpu-node-1",
        "resource": "nvidia_com_gpu",
        "unit": "integer",
        **extra,
    }
    return gauge("kube_pod_container_resource_requests", labels, gpus, start, stop, GAP)


def tenant_info(namespace: str, tenant: str, start: float, stop: float):
    return gauge("platform:namespace_tenant:info", {"namespace": namespace, "tenant": tenant}, 1, start, stop, GAP)


def tokens(pod: str, tenant: str, kind: str, value, start=HISTORY[0], stop=HISTORY[1], namespace=GATEWAY_NS):
    labels = {"job": "gateway", "namespace": namespace, "pod": pod, "tenant": tenant, "model": "m", "kind": kind}
    return counter("gateway_tokens_total", labels, value, start, stop, GAP)


def steps(*changes: tuple[float, float]):
    """A counter's value: the value of the last change at or before t."""

    def value(t: float) -> float:
        current = 0.0
        for at, v in changes:
            if t >= at:
                current = v
        return current

    return value


def acme_prompt(t: float) -> float:
    # Window 1: 5000 before the window, +1000 at 10m, +2500 at 20m, a reset (gateway restart) at
    # 25m, then 400; +999 after the window. Window 2: +150 at every scrape in [5m, 55m), also while
    # Prometheus is down: the gateway keeps counting.
    base = steps(
        (0, 5000), (S + 10 * M, 6000), (S + 20 * M, 8500), (S + 25 * M, 0), (S + 26 * M, 400), (S + 65 * M, 1399)
    )(t)
    served = 0 if t < S2 + 5 * M else (min(t, S2 + 55 * M - 1) - (S2 + 5 * M)) // 15 + 1
    return base + 150 * served


SERIES = [
    tenant_info("acme", "acme", *HISTORY),
    tenant_info("globex", "globex", S + 30 * M, HISTORY[1]),  # created mid-window 1
    tenant_info("initech", "initech", HISTORY[0], S + 40 * M),  # deleted mid-window 1
    # acme, window 1: one GPU until 5m (held since before the window), one from 10m to 20m, the
    # latter also reported by a second kube-state-metrics replica; a Pending pod (no node) holds none.
    ksm_gpus("acme", "a-old", 1, S - 30 * M, S + 5 * M),
    ksm_gpus("acme", "a-new", 1, S + 10 * M, S + 20 * M),
    ksm_gpus("acme", "a-new", 1, S + 10 * M, S + 20 * M, instance="10.0.0.6:8080"),
    ksm_gpus("acme", "a-pending", 1, *HISTORY, node=""),
    # acme, window 2: one GPU throughout, across Prometheus' 20-minute outage.
    ksm_gpus("acme", "a-long", 1, S2 - 10 * M, S2 + 70 * M),
    # globex: 2 GPUs from its creation at 30m to 90m.
    ksm_gpus("globex", "g1", 2, S + 30 * M, S + 90 * M),
    # initech: 1 GPU until its deletion at 40m.
    ksm_gpus("initech", "i1", 1, S - 2 * H, S + 40 * M),
    # A tenant's own exporter copying kube-state-metrics' series: not the platform's job.
    ksm_gpus("globex", "forged", 8, *HISTORY, job="acme-exporter"),
    tokens("gw-1", "acme", "prompt", acme_prompt),
    tokens("gw-1", "acme", "completion", steps((0, 0), (S + 15 * M, 1_000_000))),
    # A second gateway replica starting at 35m: its first sample already counts 300 tokens.
    tokens("gw-2", "acme", "prompt", steps((0, 300)), start=S + 35 * M),
    # The same name scraped from a tenant namespace: not the gateway's.
    tokens("fake", "globex", "prompt", steps((0, 0), (S + 10 * M, 10**9)), namespace="acme"),
]

# Worked out by hand from the series above: each scrape (every 15 s, on the 15 s marks) stands for
# the 15 s after it, and the billing rule samples that once a minute.
WINDOW1 = {
    # 5 minutes (0-5m) + 10 minutes (10-20m) of one GPU = 15 GPU-minutes.
    "acme": {"gpu_hours": 15 / 60, "prompt": 1000 + 2500 + 400 + 300, "completion": 1_000_000},
    # 2 GPUs from 30m to 60m = 60 GPU-minutes.
    "globex": {"gpu_hours": 1.0, "prompt": 0, "completion": 0},
    # 1 GPU from 0 to 40m.
    "initech": {"gpu_hours": 40 / 60, "prompt": 0, "completion": 0},
}
COST1 = {
    "acme": 15 / 60 * 2.5 * 2 + 4200 * 0.2e-6 * 2 + 1_000_000 * 0.6e-6 * 2,  # 1.25 + 0.00168 + 1.2 = 2.45168
    "globex": 1.0 * 2.5,  # 2.5
    "initech": 40 / 60 * 2.5 * 0.5,  # 0.833333...
}
# Window 2: the GPU is sampled for 0-20m and 40-60m only: 40 GPU-minutes; the 200 scrapes in
# [5m, 55m) each added 150 tokens, 30000 in all, including those served during the outage.
WINDOW2_ACME = {"gpu_hours": 40 / 60, "prompt": 200 * 150}
COST2_ACME = 40 / 60 * 2.5 * 2 + 30000 * 0.2e-6 * 2  # 3.333333 + 0.012


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    work = tmp_path_factory.mktemp("billing")
    # The billing samples and the price series, as the billing group records them.
    prices = chargeback_rules(PRICING, {t: tier for t, (tier, _) in TIERS.items()})
    groups = [billing.billing_group(GATEWAY_NS, TIERS, [r for r in prices if r["record"].startswith("platform:")])]
    with backfilled_prometheus(work, SERIES, groups, *HISTORY) as url:
        # An evaluation on a scrape mark would make the figures below depend on inclusive bounds.
        assert eval_phase(url, billing.BILLED_GPUS, S + H) % SCRAPE_SECONDS > 0.001
        yield url


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory) -> Path:
    """The kind stack with initech removed (it was deleted mid-window) and the test's prices."""
    kind = Path(__file__).resolve().parents[2] / "stacks" / "Pulumi.kind.yaml"
    doc = yaml.safe_load(kind.read_text())
    doc["config"]["gpu-platform:tenants"] = [
        t for t in doc["config"]["gpu-platform:tenants"] if t["name"] in ("acme", "globex")
    ]
    doc["config"]["gpu-platform:monitoring"] = {
        "retention": "40d",
        "pricing": {
            "gpuHour": 2.5,
            "perMillionPromptTokens": 0.2,
            "perMillionCompletionTokens": 0.6,
            "tierMultipliers": {"gold": 2, "bronze": 0.5},
        },
    }
    path = tmp_path_factory.mktemp("stack") / "Pulumi.billing.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def chargeback(prometheus, stack_file, *args):
    result = CliRunner().invoke(app, ["chargeback", "--prometheus", prometheus, "--stack-file", str(stack_file), *args])
    return result


def query(url: str, expr: str, at: float) -> dict[str, float]:
    payload = httpx.get(f"{url}/api/v1/query", params={"query": expr, "time": at}).json()
    assert payload["status"] == "success", payload
    return {s["metric"].get("tenant", ""): float(s["value"][1]) for s in payload["data"]["result"]}


def test_window_one_per_tenant(prometheus, stack_file):
    result = chargeback(prometheus, stack_file, "--since", "60m", "--end", _iso(S + H), "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert (document["window_start"], document["window_end"]) == (_iso(S), _iso(S + H))
    assert document["currency"] == "USD" and document["window_seconds"] == 3600
    rows = {r["tenant"]: r for r in document["rows"]}
    assert set(rows) == {"acme", "globex", "initech"}
    for tenant, expected in WINDOW1.items():
        row = rows[tenant]
        assert row["gpu_hours"] == pytest.approx(expected["gpu_hours"], abs=1e-6), tenant
        assert (row["prompt_tokens"], row["completion_tokens"]) == (expected["prompt"], expected["completion"])
        assert row["total_cost"] == pytest.approx(COST1[tenant], abs=1e-6), tenant
    # initech left the stack but is billed for its 40 minutes at the tier it had.
    assert (rows["initech"]["tier"], rows["initech"]["tier_multiplier"], rows["initech"]["cost_center"]) == (
        "bronze",
        0.5,
        "cc-3003",
    )
    assert rows["acme"]["tier_multiplier"] == 2 and rows["globex"]["tier_multiplier"] == 1
    assert document["total_cost"] == pytest.approx(sum(COST1.values()), abs=1e-6)


def test_restart_gap_bills_sampled_gpu_time_and_every_token(prometheus, stack_file):
    result = chargeback(prometheus, stack_file, "--since", "1h", "--end", _iso(S2 + H), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = {r["tenant"]: r for r in csv.DictReader(io.StringIO(result.output))}
    acme = rows["acme"]
    assert float(acme["gpu_hours"]) == pytest.approx(WINDOW2_ACME["gpu_hours"], abs=1e-6)
    assert int(acme["prompt_tokens"]) == WINDOW2_ACME["prompt"]
    assert float(acme["total_cost"]) == pytest.approx(COST2_ACME, abs=1e-6)
    assert float(rows["globex"]["gpu_hours"]) == 0 and float(rows["initech"]["total_cost"]) == 0


def test_by_cost_center(prometheus, stack_file):
    result = chargeback(
        prometheus, stack_file, "--since", "60m", "--end", _iso(S + H), "--by", "cost-center", "--format", "csv"
    )
    assert result.exit_code == 0, result.output
    rows = {r["cost_center"]: r for r in csv.DictReader(io.StringIO(result.output))}
    assert {c: float(r["total_cost"]) for c, r in rows.items()} == pytest.approx(
        {"cc-1001": COST1["acme"], "cc-2002": COST1["globex"], "cc-3003": COST1["initech"]}, abs=1e-6
    )
    assert rows["cc-1001"]["tenants"] == "acme" and rows["cc-1001"]["window_start"] == _iso(S)


def test_recording_rules_and_dashboard_use_the_same_integral(prometheus):
    # tenant:cost_per_hour:sum is the trailing hour's cost: at the end of window 1, window 1's bill.
    # Queried just after window 1's last evaluation, while the price series' last sample is within
    # the test server's 15 s lookback; the hour before it holds the same 60 billing samples.
    at = S + H - 60 + eval_phase(prometheus, billing.BILLED_GPUS, S + H) + 1
    rules = {r["record"]: r["expr"] for r in chargeback_rules(PRICING, {"acme": "gold"})}
    assert query(prometheus, rules["tenant:cost_per_hour:sum"], at) == pytest.approx(COST1, abs=1e-6)
    dashboard = json.loads(next(p for p in DASHBOARDS if p.stem == "tenant").read_text())
    (panel,) = [p for p in dashboard["panels"] if p["title"] == "Cost over the range"]
    expr = panel["targets"][0]["expr"].replace("$tenant", "acme").replace("$__range", "3600s")
    assert query(prometheus, expr, at) == pytest.approx({"acme": COST1["acme"]}, abs=1e-6)


def test_window_beyond_retention_is_refused(prometheus, stack_file):
    long_ago = time.time() - 20 * 86400
    result = chargeback(prometheus, stack_file, "--since", "31d", "--end", _iso(long_ago))
    assert result.exit_code == 2, result.output
    assert "keeps only 40d" in result.output and "Traceback" not in result.output
    too_long = chargeback(prometheus, stack_file, "--since", "32d")
    assert too_long.exit_code == 2 and "longest window is 31d" in too_long.output


def test_all_rule_groups_load_in_prometheus(tmp_path):
    # The billing group's PromQL (or/unless, offsets) must be accepted as the PrometheusRule is.
    groups = rule_groups({"acme": "acme"}, {"acme": "gold"}, Thresholds(), PRICING, GATEWAY_NS, {"acme": "cc-1"})
    assert any(g["name"] == "platform-billing" and g["interval"] == "1m" for g in groups)


def test_rules_reading_the_billing_samples_follow_them_in_their_group():
    # Groups run on their own timers; only order within a group says a rule sees the sample recorded
    # at its own instant. A cost rule elsewhere would integrate 59 or 60 samples, at random.
    groups = rule_groups({"acme": "acme"}, {"acme": "gold"}, Thresholds(), PRICING, GATEWAY_NS)
    samples = (billing.BILLED_GPUS, billing.BILLED_TOKENS)
    readers = 0
    for group in groups:
        recorded: list[str] = []
        for rule in group["rules"]:
            read = [s for s in samples if s in rule["expr"]]
            if read:
                readers += 1
                assert group["name"] == "platform-billing", (
                    f"{rule.get('record', rule.get('alert'))} in {group['name']}"
                )
                assert all(s in recorded for s in read), f"{rule.get('record')} comes before a sample it reads"
            recorded.append(rule.get("record", ""))
    assert readers >= 3
