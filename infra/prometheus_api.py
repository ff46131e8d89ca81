"""The two calls of Prometheus' HTTP API that platformctl makes: instant queries and its flags."""

from __future__ import annotations

import httpx


class PrometheusError(Exception):
    """Prometheus could not be reached or refused a query (exit 1 at the CLI)."""


class PrometheusAPI:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self._client = httpx.Client(timeout=timeout)

    def __enter__(self) -> PrometheusAPI:
        return self

    def __exit__(self, *_: object) -> None:
        self._client.close()

    def _get(self, path: str, params: dict | None = None) -> dict:
        try:
            response = self._client.get(f"{self.url}{path}", params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if response.status_code != 200 or payload.get("status") != "success":
            detail = payload.get("error") or response.text[:200]
            raise PrometheusError(f"Prometheus at {self.url} answered {response.status_code}: {detail}")
        return payload["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self._get("/api/v1/query", params)["result"]

    def retention(self) -> str | None:
        """`--storage.tsdb.retention.time` of the server, or None when it does not say."""
        try:
            flags = self._get("/api/v1/status/flags")
        except PrometheusError:
            return None
        value = flags.get("storage.tsdb.retention.time") or ""
        # Prometheus reports "0s" when the time retention is left to its 15d default.
        return {"": None, "0s": "15d"}.get(value, value)
