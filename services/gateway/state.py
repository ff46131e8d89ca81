"""What the gateway knows about tenants right now: the document, the key index, and its reload."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

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


def api_keys(headers: dict[bytes, bytes]) -> tuple[bytes | None, bytes | None]:
    """(the Bearer key, the X-API-Key key): each None when absent or empty."""
    header = headers.get(b"authorization", b"")
    bearer = (header[7:].strip() or None) if header[:7].lower() == b"bearer " else None
    return bearer, headers.get(b"x-api-key") or None


@dataclass
class GatewayState:
    settings: GatewaySettings
    document: tenants_config.Document
    keys: tenants_config.KeyIndex
    config_stamp: tuple = ()
    draining: bool = False
    # Tenant entries the last load refused (each kept as it was before, or left out on a first load).
    problems: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, settings: GatewaySettings, previous: tenants_config.Document | None = None) -> GatewayState:
        """The document as far as it is valid: a bad tenant entry is logged and skipped (or kept as it was)."""
        stamp = config_stamp(settings)
        document, problems = tenants_config.load_tenants(
            settings.config_file, settings.upstreams, settings.default_upstream, settings.route_policies, previous
        )
        state = cls(settings, document, tenants_config.KeyIndex(document), stamp)
        state.problems = problems
        for problem in problems:
            LOG.error("tenant entry refused; the other tenants are served", extra={"problem": problem})
        return state

    def authenticate(
        self, headers: dict[bytes, bytes], raw_headers: list[tuple[bytes, bytes]]
    ) -> tuple[str, tenants_config.TenantEntry] | Reply:
        if len(headers) != len(raw_headers):  # some header came twice: was it a key?
            for name in (b"authorization", b"x-api-key"):
                if sum(1 for header, _ in raw_headers if header == name) > 1:
                    return error(400, f"more than one {name.decode()} header: send one API key", code="invalid_api_key")
        bearer, x_api_key = api_keys(headers)
        if bearer is not None and x_api_key is not None and bearer != x_api_key:
            # Which one the caller meant is a guess, and a wrong guess bills another tenant.
            return error(
                400,
                "Authorization and X-API-Key carry different keys: send one API key",
                code="invalid_api_key",
                param="x-api-key",
            )
        key = bearer or x_api_key
        if key is None:
            return error(401, "missing API key: send Authorization: Bearer <key> or X-API-Key", code="missing_api_key")
        name = self.keys.tenant(key)
        tenant = self.document.tenants.get(name) if name else None
        if tenant is None:
            return error(401, "invalid API key", code="invalid_api_key")
        return name, tenant

    async def watch(self, metrics: GatewayMetrics) -> None:
        """Reload the tenants document when its file changes; keep the previous one if the new one is bad.

        Nothing stops it: a file that is missing for a moment (a Secret volume mid-swap), a directory,
        a permission error, a broken document are each logged and counted, and it goes on watching.
        """
        missing = False
        while True:
            await asyncio.sleep(self.settings.reload_interval_seconds)
            try:
                stamp = config_stamp(self.settings)
                if not stamp:
                    if self.settings.config_file is not None and not missing:
                        LOG.warning("tenant config file is missing; keeping the current one")
                    missing = True
                    continue
                missing = False
                if stamp == self.config_stamp:
                    continue
                self.config_stamp = stamp  # a bad document is reported once, not on every tick
                try:
                    fresh = GatewayState.load(self.settings, previous=self.document)
                except tenants_config.DocumentError as exc:
                    metrics.config_reloads.labels("error").inc()
                    LOG.error("tenant config reload failed; keeping the previous one", extra={"problem": str(exc)})
                    continue
                self.document, self.keys = fresh.document, fresh.keys
                metrics.declare_tenants(fresh.document.tenants)
                metrics.config_reloads.labels("partial" if fresh.problems else "ok").inc()
                LOG.info("tenant config reloaded", extra={"tenants": len(fresh.document.tenants)})
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive any surprise, and say so
                metrics.config_reloads.labels("error").inc()
                LOG.error("tenant config watcher hit an unexpected error", extra={"problem": repr(exc)})
