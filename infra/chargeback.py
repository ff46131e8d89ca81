"""`platformctl chargeback`: per-tenant GPU-hours and tokens from Prometheus, priced from the stack.

GPU-hours are the average of `tenant:gpu_allocated:sum` over the window times its length; tokens
are the increase of `gateway_tokens_total`; prices and tier multipliers come from the stack's
`monitoring.pricing`, the same table the chargeback recording rules use.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict, dataclass

import httpx

from infra.config import Pricing

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


class ChargebackError(Exception):
    pass


@dataclass
class TenantCost:
    tenant: str
    tier: str
    gpu_hours: float
    prompt_tokens: float
    completion_tokens: float
    gpu_cost: float
    token_cost: float

    @property
    def total(self) -> float:
        return self.gpu_cost + self.token_cost


def window_seconds(since: str) -> int:
    match = re.fullmatch(r"(\d+)([mhdw])", since.strip())
    if not match or int(match.group(1)) == 0:
        raise ChargebackError(f"--since {since!r}: use a duration like 90m, 12h, 30d or 4w")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _query(client: httpx.Client, prometheus: str, expr: str) -> list[dict]:
    try:
        response = client.get(f"{prometheus.rstrip('/')}/api/v1/query", params={"query": expr})
    except httpx.HTTPError as exc:
        raise ChargebackError(f"cannot reach Prometheus at {prometheus}: {exc}") from None
    if response.status_code != 200:
        raise ChargebackError(f"Prometheus at {prometheus} answered {response.status_code}: {response.text[:200]}")
    payload = response.json()
    if payload.get("status") != "success":
        raise ChargebackError(f"Prometheus query failed: {payload.get('error', payload)}")
    return payload["data"]["result"]


def collect(
    prometheus: str, since: str, pricing: Pricing, tier_of: dict[str, str], timeout: float = 10.0
) -> list[TenantCost]:
    seconds = window_seconds(since)
    with httpx.Client(timeout=timeout) as client:
        gpus = _query(client, prometheus, f"avg_over_time(tenant:gpu_allocated:sum[{since}]) * {seconds / 3600:g}")
        tokens = _query(client, prometheus, f"sum by (tenant, kind) (increase(gateway_tokens_total[{since}]))")
    usage: dict[str, dict[str, float]] = {}
    for sample in gpus:
        usage.setdefault(sample["metric"].get("tenant", ""), {})["gpu_hours"] = float(sample["value"][1])
    for sample in tokens:
        tenant, kind = sample["metric"].get("tenant", ""), sample["metric"].get("kind", "")
        usage.setdefault(tenant, {})[kind] = float(sample["value"][1])
    rows = []
    for tenant in sorted(set(usage) | set(tier_of)):
        if not tenant:
            continue
        tier = tier_of.get(tenant, "")
        multiplier = pricing.tier_multipliers.get(tier, 1.0)
        used = usage.get(tenant, {})
        gpu_hours, prompt, completion = used.get("gpu_hours", 0.0), used.get("prompt", 0.0), used.get("completion", 0.0)
        rows.append(
            TenantCost(
                tenant=tenant,
                tier=tier,
                gpu_hours=gpu_hours,
                prompt_tokens=prompt,
                completion_tokens=completion,
                gpu_cost=gpu_hours * pricing.gpu_hour * multiplier,
                token_cost=(
                    prompt * pricing.per_million_prompt_tokens + completion * pricing.per_million_completion_tokens
                )
                * multiplier
                / 1e6,
            )
        )
    return rows


def render(rows: list[TenantCost], fmt: str, currency: str) -> str:
    records = [{**asdict(row), "total": row.total, "currency": currency} for row in rows]
    if fmt == "json":
        return json.dumps(records, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(records[0]) if records else ["tenant"])
        writer.writeheader()
        writer.writerows(records)
        return out.getvalue()
    if fmt == "table":
        header = f"{'tenant':<20} {'tier':<8} {'GPU-hours':>10} {'prompt tok':>12} {'compl. tok':>12} {'GPU cost':>10} {'token cost':>10} {'total':>10}"
        lines = [header, "-" * len(header)]
        for r in rows:
            lines.append(
                f"{r.tenant:<20} {r.tier:<8} {r.gpu_hours:>10.2f} {r.prompt_tokens:>12.0f} {r.completion_tokens:>12.0f} "
                f"{r.gpu_cost:>10.2f} {r.token_cost:>10.2f} {r.total:>10.2f}"
            )
        lines.append(
            f"{'all tenants':<20} {'':<8} {sum(r.gpu_hours for r in rows):>10.2f} {'':>12} {'':>12} {'':>10} {'':>10} {sum(r.total for r in rows):>10.2f} {currency}"
        )
        return "\n".join(lines)
    raise ChargebackError(f"--format {fmt!r}: use table, csv or json")
