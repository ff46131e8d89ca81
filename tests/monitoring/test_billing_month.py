"""A month of the kind stack's tenant acme, billed by `platformctl chargeback --month`.

The last full calendar month (UTC) is generated at a 60-second scrape interval: acme's worker
holds one GPU all month and scales to a second one from 09:00 to 17:00 on weekdays, when it also
serves 4000 prompt and 1000 completion tokens a minute; Prometheus is down from 03:00 to 05:00 on
the 15th. The kind stack prices at its defaults (2.50 a GPU-hour, 0.20 and 0.60 per million
tokens, no tier multipliers). For November 2026 (30 days, 21 weekdays), by hand:

    GPU-hours  30 x 24 + 21 x 8 - 2 = 886             886 x 2.50           = 2215.000
    prompt     21 x 8 x 60 x 4000   = 40,320,000      40.32 x 0.20         =    8.064
    completion 21 x 8 x 60 x 1000   = 10,080,000      10.08 x 0.60         =    6.048
                                                                    total  = 2229.112 USD
"""

from __future__ import annotations

import calendar
import json
import os
import shutil
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from components import billing
from infra.cli import app
from tests.monitoring.backfill import backfilled_prometheus, counter, eval_phase, gauge

# Backfilling a month of rules takes minutes of CPU: run it with BILLING_MONTH_TEST=1.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("BILLING_MONTH_TEST"), reason="set BILLING_MONTH_TEST=1 to run it"),
    pytest.mark.skipif(
        shutil.which("prometheus") is None or shutil.which("promtool") is None,
        reason="prometheus missing: run scripts/install-system-packages.sh",
    ),
]
EVERY = 60
H = 3600


def last_month() -> tuple[datetime, datetime]:
    today = datetime.now(UTC)
    end = datetime(today.year, today.month, 1, tzinfo=UTC)
    start = datetime(end.year - (end.month == 1), (end.month - 2) % 12 + 1, 1, tzinfo=UTC)
    return start, end


START, END = last_month()
T0, T1 = START.timestamp(), END.timestamp()
DAYS = calendar.monthrange(START.year, START.month)[1]
WEEKDAYS = [d for d in range(1, DAYS + 1) if calendar.weekday(START.year, START.month, d) < 5]
BUSINESS = [(T0 + (d - 1) * 86400 + 9 * H, T0 + (d - 1) * 86400 + 17 * H) for d in WEEKDAYS]
OUTAGE = [(T0 + 14 * 86400 + 3 * H, T0 + 14 * 86400 + 5 * H)]  # the 15th, 03:00-05:00
HISTORY = (T0 - 2 * H, T1 + 2 * H)


def pod(name: str, start: float, stop: float):
    labels = {
        "job": "kube-state-metrics",
        "namespace": "acme",
        "pod": name,
        "uid": f"uid-{name}",
        "container": "engine",
        "node": "gpu-platform-worker2",
        "resource": "nvidia_com_gpu",
    }
    return gauge("kube_pod_container_resource_requests", labels, 1, start, stop, OUTAGE, EVERY)


def served(per_minute: int):
    """Tokens counted by the gateway by time t: `per_minute` at each scrape in business hours."""

    def value(t: float) -> float:
        minutes = sum(max(0, min(t + EVERY, b) - a) // EVERY for a, b in BUSINESS if t >= a)
        return per_minute * minutes

    return value


def tokens(kind: str, per_minute: int):
    labels = {"job": "gateway", "namespace": "platform-gateway", "pod": "gw-1", "tenant": "acme", "kind": kind}
    return counter("gateway_tokens_total", labels, served(per_minute), *HISTORY, OUTAGE, EVERY)


SERIES = [
    gauge("platform:namespace_tenant:info", {"namespace": "acme", "tenant": "acme"}, 1, *HISTORY, OUTAGE, EVERY),
    pod("llama-0", *HISTORY),
    *(pod("llama-1", a, b) for a, b in BUSINESS),
    tokens("prompt", 4000),
    tokens("completion", 1000),
]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    work = tmp_path_factory.mktemp("month")
    group = billing.billing_group("platform-gateway", {"acme": ("gold", "cc-1001")})
    with backfilled_prometheus(work, SERIES, [group], *HISTORY, lookback=f"{EVERY}s") as url:
        assert eval_phase(url, billing.BILLED_GPUS, T1) % EVERY > 0.001
        yield url


def test_a_month_of_acme(prometheus):
    gpu_hours = DAYS * 24 + len(WEEKDAYS) * 8 - 2
    prompt, completion = len(WEEKDAYS) * 8 * 60 * 4000, len(WEEKDAYS) * 8 * 60 * 1000
    total = gpu_hours * 2.50 + prompt * 0.20 / 1e6 + completion * 0.60 / 1e6
    month = f"{START:%Y-%m}"
    result = CliRunner().invoke(
        app, ["chargeback", "--prometheus", prometheus, "--month", month, "-s", "kind", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    acme = next(r for r in json.loads(result.output)["rows"] if r["tenant"] == "acme")
    assert acme["gpu_hours"] == pytest.approx(gpu_hours, abs=1e-6)
    assert (acme["prompt_tokens"], acme["completion_tokens"]) == (prompt, completion)
    assert acme["total_cost"] == pytest.approx(total, abs=1e-6)
    if month == "2026-11":
        assert (gpu_hours, prompt, completion, round(total, 3)) == (886, 40_320_000, 10_080_000, 2229.112)
    table = CliRunner().invoke(app, ["chargeback", "--prometheus", prometheus, "--month", month, "-s", "kind"])
    print(table.output)
