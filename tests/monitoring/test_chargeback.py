"""`platformctl chargeback` against a stand-in Prometheus API: prices, formats and errors."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from infra.chargeback import ChargebackError, collect, render, window_seconds
from infra.cli import app
from infra.config import Pricing
from tests.monitoring.http_stub import prometheus_api, serve


def vector(*samples):
    return 200, {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": m, "value": [0, str(v)]} for m, v in samples]},
    }


def answer(query):
    if "tenant:gpu_allocated:sum" in query:
        return vector(({"tenant": "acme"}, 720), ({"tenant": "globex"}, 100))
    if "gateway_tokens_total" in query:
        return vector(
            ({"tenant": "acme", "kind": "prompt"}, 2_000_000), ({"tenant": "acme", "kind": "completion"}, 1_000_000)
        )
    return 400, {"status": "error", "error": "unexpected query"}


PRICING = Pricing(
    gpu_hour=2.0, per_million_prompt_tokens=0.5, per_million_completion_tokens=1.5, tier_multipliers={"gold": 1.5}
)


def test_costs_apply_prices_and_tier_multipliers():
    with serve(prometheus_api(answer)) as (url, seen):
        rows = {
            r.tenant: r for r in collect(url, "30d", PRICING, {"acme": "gold", "globex": "silver", "initech": "bronze"})
        }
    assert any("[30d]" in q and "* 720" in q for q in seen), seen  # 30 days = 720 hours
    acme = rows["acme"]
    assert acme.gpu_cost == pytest.approx(720 * 2.0 * 1.5)
    assert acme.token_cost == pytest.approx((2 * 0.5 + 1 * 1.5) * 1.5)
    assert rows["globex"].gpu_cost == pytest.approx(200.0) and rows["globex"].token_cost == 0
    assert rows["initech"].total == 0  # a tenant without usage still gets a line


def test_formats():
    with serve(prometheus_api(answer)) as (url, _):
        rows = collect(url, "7d", PRICING, {"acme": "gold"})
    table = render(rows, "table", "USD")
    assert "acme" in table and "all tenants" in table and "USD" in table
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv", "USD"))))
    assert {r["tenant"] for r in parsed} == {"acme", "globex"}
    as_json = json.loads(render(rows, "json", "USD"))
    assert as_json[0]["currency"] == "USD" and "total" in as_json[0]


@pytest.mark.parametrize("since", ["30", "0d", "3 days", "1y", ""])
def test_bad_windows(since):
    with pytest.raises(ChargebackError, match="--since"):
        window_seconds(since)


def test_unreachable_prometheus_is_a_clear_error():
    with pytest.raises(ChargebackError, match="cannot reach Prometheus"):
        collect("http://127.0.0.1:9", "1d", PRICING, {})


def test_prometheus_errors_are_reported():
    with serve(prometheus_api(lambda q: (400, {"status": "error", "error": "parse error"}))) as (url, _):
        with pytest.raises(ChargebackError, match="answered 400"):
            collect(url, "1d", PRICING, {})


def test_cli_chargeback(tmp_path):
    with serve(prometheus_api(answer)) as (url, _):
        result = CliRunner().invoke(
            app, ["chargeback", "--prometheus", url, "--since", "30d", "--format", "json", "--stack", "kind"]
        )
    assert result.exit_code == 0, result.output
    rows = {r["tenant"]: r for r in json.loads(result.output)}
    assert set(rows) >= {"acme", "globex", "initech"}
    bad = CliRunner().invoke(app, ["chargeback", "--prometheus", "http://127.0.0.1:9", "--since", "soon"])
    assert bad.exit_code == 2 and "--since" in bad.output
