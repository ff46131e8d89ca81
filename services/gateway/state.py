"""What the gateway knows about tenants right now: the document, the key index, and its reload."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from services.gateway import config as tenants_config
from services.gateway.asgi import Reply
from services.gateway.errors import error
from services.gateway.metrics import GatewayMetrics
from services.gateway.settings import GatewaySettings

LOG = logging.getLogger("gateway")


def config_stamp(settings: GatewaySettings) -> tuple:
    # A Kubernetes Secret update swaps a symlink: stat() follows it, so mtime, inode and size all move.
    if settings.config_file is None:
        return ()
    try:
        st = settings.config_file.stat()
    except OSError:
        return ()
    return (st.st_mtime_ns, st.st_ino, st.st_size)


def api_key(headers: dict[bytes, bytes]) -> bytes | None:
    header = headers.get(b"authorization", b"")
    if header[:7].lower() == b"bearer ":
        return header[7:].strip() or None
    return headers.get(b"x-api-key") or None


@dataclass
class GatewayState:
    settings: GatewaySettings
    document: tenants_config.Document
    keys: tenants_config.KeyIndex
    config_stamp: tuple = ()
    draining: bool = False

    @classmethod
    def load(cls, settings: GatewaySettings) -> GatewayState:
        stamp = config_stamp(settings)
        document = tenants_config.load(
            settings.config_file, settings.upstreams, settings.default_upstream, settings.route_policies
        )
        return cls(settings, document, tenants_config.KeyIndex(document), stamp)

    def authenticate(self, headers: dict[bytes, bytes]) -> tuple[str, tenants_config.Tenant] | Reply:
        key = api_key(headers)
        if key is None:
            return error(401, "missing API key: send Authorization: Bearer <key> or X-API-Key", code="missing_api_key")
        name = self.keys.tenant(key)
        tenant = self.document.tenants.get(name) if name else None
        if tenant is None:
            return error(401, "invalid API key", code="invalid_api_key")
        return name, tenant

    async def watch(self, metrics: GatewayMetrics) -> None:
        """Reload the tenants document when its file changes; keep the previous one if the new one is bad."""
        while True:
            await asyncio.sleep(self.settings.reload_interval_seconds)
            stamp = config_stamp(self.settings)
            if stamp == self.config_stamp or not stamp:
                continue
            try:
                fresh = GatewayState.load(self.settings)
            except tenants_config.ConfigError as exc:
                metrics.config_reloads.labels("error").inc()
                LOG.error("tenant config reload failed; keeping the previous one", extra={"problem": str(exc)})
                self.config_stamp = stamp
                continue
            self.document, self.keys, self.config_stamp = fresh.document, fresh.keys, fresh.config_stamp
            metrics.declare_tenants(fresh.document.tenants)
            metrics.config_reloads.labels("ok").inc()
            LOG.info("tenant config reloaded", extra={"tenants": len(fresh.document.tenants)})
