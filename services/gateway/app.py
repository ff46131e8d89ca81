"""The gateway's ASGI applications: OpenAI's completions and models endpoints, health and readiness on the
API port; metrics on their own port."""

from __future__ import annotations

import asyncio
import logging

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.gateway.asgi import ClientGone, Reply, send_reply
from services.gateway.completions import Completions
from services.gateway.endpoints import Endpoints
from services.gateway.engine_metrics import scrape_forever
from services.gateway.errors import error
from services.gateway.metrics import GatewayMetrics
from services.gateway.picker import Picker, PickerSettings
from services.gateway.ratelimit import RateLimiter
from services.gateway.request_fields import CHAT_COMPLETIONS, COMPLETIONS
from services.gateway.routing import CircuitBreakers
from services.gateway.scheduler import FairScheduler
from services.gateway.settings import GatewaySettings
from services.gateway.state import GatewayState
from services.gateway.upstream import Upstreams

LOG = logging.getLogger("gateway")
TEXT = b"text/plain; charset=utf-8"


def _model_object(model: str) -> dict:
    return {"id": model, "object": "model", "created": 0, "owned_by": "gpu-platform"}


class Gateway:
    """An ASGI application (uvicorn runs it); `state.draining` turns readiness off for a graceful stop."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.state = GatewayState.load(settings)
        self.metrics = metrics = GatewayMetrics()
        self.limiter = RateLimiter(
            settings.redis_url,
            settings.fail_closed,
            settings.lease_seconds,
            on_backend_change=lambda up: metrics.backend_up.set(int(up)),
            redis_timeout=settings.redis_timeout_seconds,
            reserve_min_rate=settings.reserve_min_rate,
        )
        self.limiter.scripts.on_error = metrics.script_errors.inc
        metrics.backend_up.set(1 if settings.redis_url else 0)
        metrics.declare_tenants(self.state.document.tenants)
        self.upstreams = Upstreams(
            settings.connect_timeout_seconds,
            settings.upstream_timeout_seconds,
            CircuitBreakers(settings.breaker_failures, settings.breaker_open_seconds),
            settings.first_byte_timeout,
        )
        self.endpoints = Endpoints(lambda: self.state.document.endpoints)
        self.picker = Picker(PickerSettings(), self.endpoints, metrics.registry)
        self.endpoints.on_removed.append(self.picker.forget)
        self.completions = Completions(
            settings,
            self.state,
            self.limiter,
            FairScheduler(settings.max_upstream_concurrency),
            self.upstreams,
            metrics,
            self.picker,
        )
        # path -> (method, handler)
        self.routes = {
            CHAT_COMPLETIONS.path: ("POST", self._chat),
            COMPLETIONS.path: ("POST", self._text),
            "/v1/models": ("GET", self._models),
            "/healthz": ("GET", self._healthz),
            "/readyz": ("GET", self._readyz),
        }
        self._watcher: asyncio.Task | None = None
        self._background: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def begin_drain(self) -> None:
        """SIGTERM: not ready at once; requests still running `drain_seconds` later are ended.

        Called from a signal handler, so it only schedules work on the loop.
        """
        self.state.draining = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(
                self._loop.call_later, self.settings.drain_seconds, self.completions.active.end_all
            )

    async def metrics_app(self, scope, receive, send) -> None:
        """The ASGI application on the metrics port: /metrics, and nothing of the API."""
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            await send_reply(send, error(404, f"no route {scope['path']!r}", code="not_found"))
            return
        body = generate_latest(self.metrics.registry)
        await send_reply(send, Reply(200, body, content_type=CONTENT_TYPE_LATEST.encode()))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            route = self.routes.get(scope["path"])
            if route is None and scope["path"].startswith("/v1/models/"):
                route = ("GET", self._model)
            if route is None:
                await send_reply(send, error(404, f"no route {scope['path']!r}", code="not_found"))
            elif scope["method"] != route[0] and not (scope["method"] == "HEAD" and route[0] == "GET"):
                allow = [(b"allow", route[0].encode())]
                await send_reply(send, error(405, f"use {route[0]} here", code="method_not_allowed", headers=allow))
            else:
                try:
                    await route[1](scope, receive, send)
                except ClientGone:
                    pass
                except Exception as exc:
                    # A bug, never a client's input: counted, or the dashboards' error rate would not show it.
                    self.metrics.request("", "", "", "500")
                    LOG.error("request failed", extra={"path": scope["path"], "problem": repr(exc)}, exc_info=exc)
                    try:
                        await send_reply(send, error(500, "the gateway failed on this request", code="internal_error"))
                    except Exception:  # noqa: BLE001 - the response had started: the server closes the connection
                        raise exc from None
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _chat(self, scope, receive, send) -> None:
        await self.completions(scope, receive, send, CHAT_COMPLETIONS)

    async def _text(self, scope, receive, send) -> None:
        await self.completions(scope, receive, send, COMPLETIONS)

    async def _models(self, scope, receive, send) -> None:
        who = self.state.authenticate(dict(scope["headers"]), scope["headers"])
        if isinstance(who, Reply):
            await send_reply(send, who)
            return
        _, tenant = who
        data = [_model_object(model) for model in tenant.models]
        await send_reply(send, Reply(200, orjson.dumps({"object": "list", "data": data})))

    async def _model(self, scope, receive, send) -> None:
        """GET /v1/models/{id}, as OpenAI answers it: the model, or 404 for one this key may not use."""
        who = self.state.authenticate(dict(scope["headers"]), scope["headers"])
        if isinstance(who, Reply):
            await send_reply(send, who)
            return
        _, tenant = who
        model = scope["path"][len("/v1/models/") :]
        if model in tenant.models:
            await send_reply(send, Reply(200, orjson.dumps(_model_object(model))))
            return
        # The same answer whether the model exists for another tenant or nowhere.
        await send_reply(send, error(404, f"the model '{model}' does not exist", code="model_not_found", param="model"))

    async def _healthz(self, scope, receive, send) -> None:
        await send_reply(send, Reply(200, b"ok", content_type=TEXT))

    async def _readyz(self, scope, receive, send) -> None:
        if self.state.draining:
            reply = Reply(503, b"draining", content_type=TEXT)
        elif self.settings.fail_closed and not self.limiter.backend_up:
            reply = Reply(503, b"rate-limit backend unavailable", content_type=TEXT)
        elif self._watcher is not None and self._watcher.done():
            reply = Reply(503, b"tenant config watcher stopped", content_type=TEXT)
        else:
            reply = Reply(200, b"ready", content_type=TEXT)
        await send_reply(send, reply)

    def _watcher_stopped(self, task: asyncio.Task) -> None:
        self.metrics.watcher_up.set(0)
        if not task.cancelled():
            LOG.error("tenant config watcher stopped", extra={"problem": repr(task.exception())})

    def _start_discovery(self) -> list[asyncio.Task]:
        """The engine-metrics scraper, and in a cluster the EndpointSlice watcher (endpointslices.py)."""
        from services.gateway.endpointslices import watch_from_environment

        tasks = [
            asyncio.create_task(
                scrape_forever(self.picker, self.endpoints.all_pods, self.picker.settings.scrape_seconds)
            )
        ]
        watcher = watch_from_environment(self.endpoints, lambda: self.state.document)
        if watcher is not None:
            tasks.append(asyncio.create_task(watcher))
        return tasks

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                self._watcher = asyncio.create_task(self.state.watch(self.metrics))
                self.metrics.watcher_up.set(1)
                self._watcher.add_done_callback(self._watcher_stopped)
                self._background = self._start_discovery()
                self._background.append(
                    asyncio.create_task(self.completions.active.sweep_stalled(self.settings.client_write_timeout))
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._watcher is not None:
                    self._watcher.cancel()
                for task in self._background:
                    task.cancel()
                self.upstreams.close()
                await self.limiter.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
