"""`platformctl chargeback` without Prometheus: windows, retention, formats and errors.

The figures themselves are checked on a real Prometheus in test_billing_prometheus.py.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from components import billing
from infra.chargeback import (
    COST_CENTER_COLUMNS,
    TENANT_COLUMNS,
    ChargebackError,
    TenantCost,
    Window,
    check_retention,
    render,
    resolve_window,
    window_seconds,
)
from infra.cli import app
from infra.config import Pricing
from infra.prometheus_api import PrometheusAPI, PrometheusError
from tests.monitoring.http_stub import prometheus_api, serve

NOW = datetime(2026, 12, 1, 12, 34, 56, tzinfo=UTC)
PRICING = Pricing(gpu_hour=2.0, tier_multipliers={"gold": 1.5})


@pytest.mark.parametrize("since", ["30", "0d", "3 days", "1y", ""])
def test_bad_windows(since):
    with pytest.raises(ChargebackError, match="--since"):
        window_seconds(since)


def test_window_ends_on_a_whole_minute_and_is_at_most_31_days():
    window = resolve_window("30d", None, None, NOW)
    assert window.end == datetime(2026, 12, 1, 12, 34, tzinfo=UTC) and window.seconds == 30 * 86400
    with pytest.raises(ChargebackError, match="longest window is 31d"):
        resolve_window("32d", None, None, NOW)
    with pytest.raises(ChargebackError, match="--end"):
        resolve_window("1h", "2027-01-01T00:00:00Z", None, NOW)


def test_month_is_the_calendar_month_in_utc():
    window = resolve_window(None, None, "2026-11", NOW)
    assert (window.start, window.end) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert resolve_window(None, None, "2026-02", NOW).seconds == 28 * 86400
    with pytest.raises(ChargebackError, match="not ended"):
        resolve_window(None, None, "2026-12", NOW)
    with pytest.raises(ChargebackError, match="not both"):
        resolve_window("1d", None, "2026-11", NOW)


class _Retention:
    url = "http://prometheus"

    def __init__(self, retention):
        self._retention = retention

    def retention(self):
        return self._retention


def test_window_beyond_retention_is_refused_with_the_retention_named():
    window = resolve_window("30d", None, None, NOW)
    check_retention(_Retention("45d"), window, "45d", NOW)
    with pytest.raises(ChargebackError, match="keeps only 15d"):
        check_retention(_Retention("15d"), window, "45d", NOW)
    # A server that does not report its flags is judged by the stack's monitoring.retention.
    with pytest.raises(ChargebackError, match="keeps only 20d"):
        check_retention(_Retention(None), window, "20d", NOW)


def _rows():
    window = Window(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    acme = TenantCost("acme", "gold", "cc-1", billing.prices(PRICING, "gold"), 10.0, {"prompt": 2e6, "completion": 1e6})
    globex = TenantCost("globex", "silver", "cc-1", billing.prices(PRICING, "silver"), 4.0)
    initech = TenantCost("initech", "bronze", "cc-3", billing.prices(PRICING, "bronze"))
    return [acme, globex, initech], window


def test_csv_columns_are_the_documented_ones():
    rows, window = _rows()
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv", "EUR", window))))
    assert list(parsed[0]) == TENANT_COLUMNS
    acme = parsed[0]
    assert (acme["window_start"], acme["window_end"]) == ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    # 10 GPU-hours at 2.0 x 1.5; 2M prompt tokens at 0.20/M and 1M completion at 0.60/M, x 1.5.
    assert float(acme["gpu_cost"]) == pytest.approx(30.0)
    assert float(acme["token_cost"]) == pytest.approx((2 * 0.2 + 0.6) * 1.5)
    assert acme["currency"] == "EUR" and acme["tier_multiplier"] == "1.5"
    centers = list(csv.DictReader(io.StringIO(render(rows, "csv", "EUR", window, by="cost-center"))))
    assert list(centers[0]) == COST_CENTER_COLUMNS
    assert [(c["cost_center"], c["tenants"]) for c in centers] == [("cc-1", "acme;globex"), ("cc-3", "initech")]
    assert float(centers[0]["total_cost"]) == pytest.approx(30.0 + 1.5 + 8.0)


def test_json_carries_window_currency_and_total():
    rows, window = _rows()
    document = json.loads(render(rows, "json", "USD", window))
    assert document["window_seconds"] == 30 * 86400 and document["by"] == "tenant"
    assert document["total_cost"] == pytest.approx(sum(r.total for r in rows))
    assert list(document["rows"][0]) == TENANT_COLUMNS
    table = render(rows, "table", "USD", window)
    assert "acme" in table and "2026-11-01T00:00:00Z" in table


def test_bad_format_and_by():
    rows, window = _rows()
    with pytest.raises(ChargebackError, match="--format"):
        render(rows, "xml", "USD", window)
    with pytest.raises(ChargebackError, match="--by"):
        render(rows, "csv", "USD", window, by="team")


def test_unreachable_prometheus_is_a_clear_error():
    with PrometheusAPI("http://127.0.0.1:9") as api, pytest.raises(PrometheusError, match="cannot reach Prometheus"):
        api.query("up")


def test_prometheus_errors_are_reported():
    with serve(prometheus_api(lambda q: (400, {"status": "error", "error": "parse error"}))) as (url, _):
        with PrometheusAPI(url) as api, pytest.raises(PrometheusError, match="answered 400: parse error"):
            api.query("up(")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--since", "soon"], "--since"),
        (["--since", "40d"], "longest window"),
        (["--month", "2026-13"], "--month"),
        (["--format", "xml"], "--format"),
        (["--by", "team"], "--by"),
    ],
)
def test_cli_bad_input_exits_2_without_traceback(args, message):
    result = CliRunner().invoke(app, ["chargeback", "--prometheus", "http://127.0.0.1:9", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_unreachable_prometheus_exits_1():
    result = CliRunner().invoke(app, ["chargeback", "--prometheus", "http://127.0.0.1:9", "--since", "1h"])
    assert result.exit_code == 1 and "cannot reach Prometheus" in result.output
