"""`platformctl chargeback`: per-tenant (or per-cost-center) GPU-hours, tokens and cost over a window.

Usage comes from Prometheus through the integrals of `components.billing` (the same PromQL the
chargeback recording rules and the tenant dashboard's cost panel use); prices come from the
stack's `monitoring.pricing` through `billing.prices`, the function the price series are
rendered from. A tenant that is no longer in the stack is priced at the tier its billing info
series last had.

Output columns (CSV, and the `rows` of the JSON document) are listed in `TENANT_COLUMNS` and
`COST_CENTER_COLUMNS`; the README documents their units.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from components import billing
from infra.config import Pricing
from infra.config.monitoring import LONGEST_BILLING_WINDOW_DAYS
from infra.prometheus_api import PrometheusAPI

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
# A calendar month; monitoring.retention must cover it (checked at config time).
MAX_WINDOW_SECONDS = LONGEST_BILLING_WINDOW_DAYS * 86400
NO_COST_CENTER = "(none)"

TENANT_COLUMNS = [
    "window_start",
    "window_end",
    "tenant",
    "cost_center",
    "tier",
    "tier_multiplier",
    "gpu_hours",
    "prompt_tokens",
    "completion_tokens",
    "gpu_hour_price",
    "gpu_cost",
    "token_cost",
    "total_cost",
    "currency",
]
COST_CENTER_COLUMNS = [
    "window_start",
    "window_end",
    "cost_center",
    "tenants",
    "gpu_hours",
    "prompt_tokens",
    "completion_tokens",
    "gpu_cost",
    "token_cost",
    "total_cost",
    "currency",
]


class ChargebackError(Exception):
    """A problem with the user's input (exit 2) unless `usage` is False (Prometheus failed: exit 1)."""

    def __init__(self, message: str, usage: bool = True):
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    @property
    def promql(self) -> str:
        return f"{self.seconds}s"


def window_seconds(since: str) -> int:
    match = re.fullmatch(r"(\d+)([mhdw])", since.strip())
    if not match or int(match.group(1)) == 0:
        raise ChargebackError(f"--since {since!r}: use a duration like 90m, 12h, 30d or 4w")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _parse_time(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ChargebackError(f"{option} {text!r}: use an ISO 8601 time, e.g. 2026-11-30T00:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def resolve_window(
    since: str | None, end: str | None = None, month: str | None = None, now: datetime | None = None
) -> Window:
    """The billed window: `--month YYYY-MM` (UTC), or `--since` ending at `--end` (default: now).

    The end is rounded down to a whole minute: usage is sampled once a minute.
    """
    now = now or datetime.now(UTC)
    if month:
        if since or end:
            raise ChargebackError("--month: give either --month or --since/--end, not both")
        match = re.fullmatch(r"(\d{4})-(\d{2})", month.strip())
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise ChargebackError(f"--month {month!r}: use YYYY-MM, e.g. 2026-11")
        year, number = int(match.group(1)), int(match.group(2))
        start = datetime(year, number, 1, tzinfo=UTC)
        stop = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
        if stop > now:
            raise ChargebackError(f"--month {month}: the month has not ended yet (it ends {stop:%Y-%m-%dT%H:%MZ})")
        return Window(start, stop)
    seconds = window_seconds(since or "30d")
    if seconds > MAX_WINDOW_SECONDS:
        raise ChargebackError(f"--since {since}: the longest window is 31d (a calendar month)")
    stop = _parse_time(end, "--end") if end else now
    stop = stop.replace(second=0, microsecond=0)
    if stop > now:
        raise ChargebackError(f"--end {end}: is in the future")
    return Window(stop - timedelta(seconds=seconds), stop)


def check_retention(api: PrometheusAPI, window: Window, configured: str, now: datetime | None = None) -> None:
    """Refuse a window that starts before what Prometheus still keeps: the bill would be short."""
    retention = api.retention() or configured
    keeps = timedelta(seconds=duration_seconds(retention))
    oldest = (now or datetime.now(UTC)) - keeps
    if window.start < oldest:
        raise ChargebackError(
            f"--since/--end/--month: the window starts {window.start:%Y-%m-%dT%H:%MZ}, but Prometheus at "
            f"{api.url} keeps only {retention} (data since about {oldest:%Y-%m-%dT%H:%MZ}): the bill would be short"
        )


def duration_seconds(duration: str) -> int:
    """Seconds of a Prometheus duration such as 45d, 1y or 12h30m."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 365 * 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ChargebackError(f"retention {duration!r}: not a Prometheus duration")
    return int(sum(int(n) * units[u] for n, u in parts))


@dataclass
class TenantCost:
    tenant: str
    tier: str
    cost_center: str
    prices: billing.Prices
    gpu_hours: float = 0.0
    tokens: dict[str, float] = field(default_factory=dict)

    @property
    def prompt_tokens(self) -> int:
        return round(self.tokens.get("prompt", 0.0))

    @property
    def completion_tokens(self) -> int:
        return round(self.tokens.get("completion", 0.0))

    @property
    def gpu_cost(self) -> float:
        return self.gpu_hours * self.prices.gpu_hour

    @property
    def token_cost(self) -> float:
        return self.prompt_tokens * self.prices.prompt_token + self.completion_tokens * self.prices.completion_token

    @property
    def total(self) -> float:
        return self.gpu_cost + self.token_cost


def collect(
    api: PrometheusAPI,
    window: Window,
    pricing: Pricing,
    tenants: dict[str, tuple[str, str]],
) -> list[TenantCost]:
    """One row per tenant in the stack (`tenants`: name to (tier, cost center)) or with usage in the window."""
    at = window.end.timestamp()
    gpus = api.query(billing.gpu_hours(window.promql), at)
    tokens = api.query(billing.tokens(window.promql), at)
    # Tenants removed from the stack are still billed for their time, at the tier they last had.
    info = api.query(f"last_over_time({billing.TENANT_BILLING_INFO}[{window.promql}])", at)
    known = dict(tenants)
    for sample in info:
        labels = sample["metric"]
        known.setdefault(labels.get("tenant", ""), (labels.get("tier", ""), labels.get("cost_center", "")))
    rows: dict[str, TenantCost] = {}

    def row(tenant: str) -> TenantCost:
        if tenant not in rows:
            tier, cost_center = known.get(tenant, ("", ""))
            rows[tenant] = TenantCost(tenant, tier, cost_center or NO_COST_CENTER, billing.prices(pricing, tier))
        return rows[tenant]

    for tenant in known:
        if tenant:
            row(tenant)
    for sample in gpus:
        if sample["metric"].get("tenant"):
            row(sample["metric"]["tenant"]).gpu_hours = float(sample["value"][1])
    for sample in tokens:
        labels = sample["metric"]
        if labels.get("tenant"):
            row(labels["tenant"]).tokens[labels.get("kind", "")] = float(sample["value"][1])
    return [rows[name] for name in sorted(rows)]


def _money(value: float) -> float:
    # Six decimals: a line's cost is not rounded to cents, so that the lines add up to the total.
    return round(value, 6)


def tenant_records(rows: list[TenantCost], window: Window, currency: str) -> list[dict]:
    bounds = _bounds(window)
    return [
        {
            **bounds,
            "tenant": r.tenant,
            "cost_center": r.cost_center,
            "tier": r.tier,
            "tier_multiplier": r.prices.multiplier,
            "gpu_hours": round(r.gpu_hours, 6),
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "gpu_hour_price": _money(r.prices.gpu_hour),
            "gpu_cost": _money(r.gpu_cost),
            "token_cost": _money(r.token_cost),
            "total_cost": _money(r.total),
            "currency": currency,
        }
        for r in rows
    ]


def cost_center_records(rows: list[TenantCost], window: Window, currency: str) -> list[dict]:
    groups: dict[str, list[TenantCost]] = {}
    for r in rows:
        groups.setdefault(r.cost_center, []).append(r)
    return [
        {
            **_bounds(window),
            "cost_center": center,
            "tenants": ";".join(r.tenant for r in members),
            "gpu_hours": round(sum(r.gpu_hours for r in members), 6),
            "prompt_tokens": sum(r.prompt_tokens for r in members),
            "completion_tokens": sum(r.completion_tokens for r in members),
            "gpu_cost": _money(sum(r.gpu_cost for r in members)),
            "token_cost": _money(sum(r.token_cost for r in members)),
            "total_cost": _money(sum(r.total for r in members)),
            "currency": currency,
        }
        for center, members in sorted(groups.items())
    ]


def _bounds(window: Window) -> dict[str, str]:
    return {"window_start": f"{window.start:%Y-%m-%dT%H:%M:%SZ}", "window_end": f"{window.end:%Y-%m-%dT%H:%M:%SZ}"}


def render(rows: list[TenantCost], fmt: str, currency: str, window: Window, by: str = "tenant") -> str:
    if by not in ("tenant", "cost-center"):
        raise ChargebackError(f"--by {by!r}: use tenant or cost-center")
    if fmt not in ("table", "csv", "json"):
        raise ChargebackError(f"--format {fmt!r}: use table, csv or json")
    per_tenant = by == "tenant"
    records = tenant_records(rows, window, currency) if per_tenant else cost_center_records(rows, window, currency)
    columns = TENANT_COLUMNS if per_tenant else COST_CENTER_COLUMNS
    if fmt == "json":
        document = {
            **_bounds(window),
            "window_seconds": window.seconds,
            "currency": currency,
            "by": by,
            "rows": records,
            "total_cost": _money(sum(r.total for r in rows)),
        }
        return json.dumps(document, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return out.getvalue()
    key = "tenant" if per_tenant else "cost_center"
    header = (
        f"{key:<20} {'GPU-hours':>10} {'prompt tok':>12} {'compl. tok':>12} "
        f"{'GPU cost':>10} {'token cost':>10} {'total':>10}"
    )
    lines = [f"{_bounds(window)['window_start']} .. {_bounds(window)['window_end']} ({currency})", header]
    lines.append("-" * len(header))
    for r in records:
        lines.append(
            f"{r[key]:<20} {r['gpu_hours']:>10.2f} {r['prompt_tokens']:>12} {r['completion_tokens']:>12} "
            f"{r['gpu_cost']:>10.2f} {r['token_cost']:>10.2f} {r['total_cost']:>10.2f}"
        )
    lines.append(
        f"{'all':<20} {sum(r.gpu_hours for r in rows):>10.2f} {'':>12} {'':>12} {'':>10} {'':>10} "
        f"{sum(r.total for r in rows):>10.2f} {currency}"
    )
    return "\n".join(lines)
