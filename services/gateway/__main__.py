"""`python -m services.gateway` (settings from GATEWAY_* environment variables).

Two servers on one event loop: the API on GATEWAY_PORT and /metrics on GATEWAY_METRICS_PORT,
so the metrics (which name every tenant, model and volume) can be reachable from the monitoring
namespace only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

import uvicorn

from services.gateway import logs
from services.gateway.app import Gateway
from services.gateway.config import DocumentError
from services.gateway.server_protocol import bounded_protocol
from services.gateway.settings import GatewaySettings

# uvicorn's own wait for requests after the drain deadline: they have been ended by then and
# only need to write their last bytes.
SHUTDOWN_MARGIN_SECONDS = 5


class DrainingServer(uvicorn.Server):
    """On SIGTERM: report not-ready at once, stop accepting, let in-flight requests run until the drain deadline."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    def handle_exit(self, sig, frame) -> None:
        self.gateway.begin_drain()
        super().handle_exit(sig, frame)


class MetricsServer(uvicorn.Server):
    """Stopped by the API server's end, not by signals: Prometheus can scrape through the drain."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def server_config(app, settings: GatewaySettings, port: int, **extra) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        log_level="warning",
        access_log=False,
        log_config=None,  # keep the JSON handler for uvicorn's own messages
        server_header=False,
        proxy_headers=False,  # nothing reads the client address: skip the middleware on every request
        http=bounded_protocol(settings.max_header_bytes, settings.max_headers, settings.request_timeout_seconds),
        timeout_keep_alive=settings.keep_alive_seconds,
        interface="asgi3",
        **extra,
    )


async def serve(settings: GatewaySettings, app: Gateway) -> None:
    api = DrainingServer(
        server_config(
            app,
            settings,
            settings.port,
            lifespan="on",
            limit_concurrency=settings.max_connections,
            timeout_graceful_shutdown=int(settings.drain_seconds) + SHUTDOWN_MARGIN_SECONDS,
        ),
        app,
    )
    metrics = MetricsServer(server_config(app.metrics_app, settings, settings.metrics_port, lifespan="off"))
    metrics_task = asyncio.create_task(metrics.serve())
    try:
        await api.serve()
    finally:
        metrics.should_exit = True
        await metrics_task


def main() -> None:
    settings = GatewaySettings()
    logs.configure(settings.log_level)
    try:
        app = Gateway(settings)
    except DocumentError as exc:
        logging.getLogger("gateway").error("cannot start", extra={"problem": str(exc)})
        sys.exit(2)
    if settings.metrics_port == settings.port:
        logging.getLogger("gateway").error(
            "cannot start", extra={"problem": "GATEWAY_METRICS_PORT equals GATEWAY_PORT"}
        )
        sys.exit(2)
    api_config = server_config(app, settings, settings.port)  # only for the event loop uvicorn would pick (uvloop)
    with asyncio.Runner(loop_factory=api_config.get_loop_factory()) as runner:
        runner.run(serve(settings, app))


if __name__ == "__main__":
    main()
