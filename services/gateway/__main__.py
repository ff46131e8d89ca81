"""`python -m services.gateway` (settings from GATEWAY_* environment variables)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from services.gateway import logs
from services.gateway.app import Gateway
from services.gateway.config import ConfigError
from services.gateway.settings import GatewaySettings


class DrainingServer(uvicorn.Server):
    """On SIGTERM: report not-ready at once, stop accepting, let in-flight requests finish."""

    def __init__(self, config: uvicorn.Config, state) -> None:
        super().__init__(config)
        self.gateway_state = state

    def handle_exit(self, sig, frame) -> None:
        self.gateway_state.draining = True
        super().handle_exit(sig, frame)


def main() -> None:
    settings = GatewaySettings()
    logs.configure(settings.log_level)
    try:
        app = Gateway(settings)
    except ConfigError as exc:
        logging.getLogger("gateway").error("cannot start", extra={"problem": str(exc)})
        sys.exit(2)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        log_config=None,  # keep the JSON handler for uvicorn's own messages
        timeout_graceful_shutdown=int(settings.drain_seconds) or None,
        lifespan="on",
        server_header=False,
        proxy_headers=False,  # nothing reads the client address: skip the middleware on every request
    )
    DrainingServer(config, app.state).run()


if __name__ == "__main__":
    main()
