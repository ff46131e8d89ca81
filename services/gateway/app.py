"""The gateway's HTTP API: OpenAI's completions and models endpoints, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.gateway import config as tenants_config
from services.gateway.errors import error
from services.gateway.metrics import GatewayMetrics
from services.gateway.ratelimit import RateLimiter
from services.gateway.routing import CircuitBreakers, candidates
from services.gateway.scheduler import FairScheduler, QueueFull
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import UpstreamFailure, Upstreams, relay_events, response_headers, usage_of

LOG = logging.getLogger("gateway")


@dataclass
class State:
    settings: GatewaySettings
    document: tenants_config.Document
    keys: tenants_config.KeyIndex
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    draining: bool = False
    config_stamp: tuple = ()


def api_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


def config_stamp(settings: GatewaySettings) -> tuple:
    # A Kubernetes Secret update swaps a symlink: stat() follows it, so mtime, inode and size all move.
    if settings.config_file is None:
        return ()
    try:
        st = settings.config_file.stat()
    except OSError:
        return ()
    return (st.st_mtime_ns, st.st_ino, st.st_size)


def load_state(settings: GatewaySettings) -> State:
    document = tenants_config.load(
        settings.config_file, settings.upstreams, settings.default_upstream, settings.route_policies
    )
    return State(settings, document, tenants_config.KeyIndex(document), config_stamp=config_stamp(settings))


async def watch_config(state: State) -> None:
    while True:
        await asyncio.sleep(state.settings.reload_interval_seconds)
        stamp = config_stamp(state.settings)
        if stamp == state.config_stamp or not stamp:
            continue
        try:
            fresh = load_state(state.settings)
        except tenants_config.ConfigError as exc:
            state.metrics.config_reloads.labels("error").inc()
            LOG.error("tenant config reload failed; keeping the previous one", extra={"problem": str(exc)})
            state.config_stamp = stamp
            continue
        state.document, state.keys, state.config_stamp = fresh.document, fresh.keys, stamp
        state.metrics.config_reloads.labels("ok").inc()
        LOG.info("tenant config reloaded", extra={"tenants": len(fresh.document.tenants)})


def validate_body(raw: bytes, chat: bool) -> dict[str, Any] | Response:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return error(400, "request body is not valid JSON")
    if not isinstance(body, dict):
        return error(400, "request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return error(400, "missing required field 'model'", param="model")
    field_name = "messages" if chat else "prompt"
    value = body.get(field_name)
    if (chat and not isinstance(value, list)) or (not chat and not isinstance(value, (str, list))):
        return error(400, f"missing or invalid required field '{field_name}'", param=field_name)
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        return error(400, "max_tokens must be a positive integer", param="max_tokens")
    if "stream" in body and not isinstance(body["stream"], bool):
        return error(400, "stream must be a boolean", param="stream")
    return body


def create_app(settings: GatewaySettings) -> Starlette:
    state = load_state(settings)
    metrics = state.metrics
    limiter = RateLimiter(
        settings.redis_url, settings.fail_closed, on_backend_change=lambda up: metrics.backend_up.set(1 if up else 0)
    )
    metrics.backend_up.set(1 if settings.redis_url else 0)
    scheduler = FairScheduler(settings.max_upstream_concurrency)
    upstreams = Upstreams(
        settings.connect_timeout_seconds,
        settings.upstream_timeout_seconds,
        CircuitBreakers(settings.breaker_failures, settings.breaker_open_seconds),
    )

    def too_many(name: str, model: str, limits, decision, ids: dict[str, str]) -> Response:
        metrics.rate_limited.labels(name, decision.reason).inc()
        metrics.requests.labels(name, model, "", "429").inc()
        headers = {"retry-after": str(max(1, int(decision.reset_seconds + 0.999))), **ids}
        for kind, limit, remaining in (
            ("requests", limits.rpm, decision.remaining_requests),
            ("tokens", limits.tpm, decision.remaining_tokens),
        ):
            if limit is not None:
                headers[f"x-ratelimit-limit-{kind}"] = str(limit)
                headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
                headers[f"x-ratelimit-reset-{kind}"] = f"{decision.reset_seconds:.0f}s"
        return error(
            429,
            f"rate limit reached for {decision.reason} per minute",
            code=f"rate_limit_{decision.reason}",
            headers=headers,
        )

    def queue_full(name: str, model: str, ids: dict[str, str]) -> Response:
        metrics.rate_limited.labels(name, "queue").inc()
        metrics.requests.labels(name, model, "", "429").inc()
        return error(
            429,
            "too many requests in flight for this tenant",
            code="rate_limit_concurrency",
            headers={"retry-after": "1", **ids},
        )

    def authenticate(request: Request) -> tuple[str, tenants_config.Tenant] | Response:
        key = api_key(request)
        if key is None:
            return error(401, "missing API key: send Authorization: Bearer <key> or X-API-Key", code="missing_api_key")
        name = state.keys.tenant(key)
        tenant = state.document.tenants.get(name) if name else None
        if tenant is None:
            return error(401, "invalid API key", code="invalid_api_key")
        return name, tenant

    async def complete(request: Request, chat: bool) -> Response:
        started = time.perf_counter()
        who = authenticate(request)
        if isinstance(who, Response):
            return who
        name, tenant = who
        limits = tenant.limits
        refused = limiter.refused_now(name)
        if refused is not None:
            # A flooding tenant is turned away before its body is read or parsed.
            return too_many(name, "", limits, refused, {})
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
            return error(413, f"request body larger than {settings.max_body_bytes} bytes")
        raw = await request.body()
        if len(raw) > settings.max_body_bytes:
            return error(413, f"request body larger than {settings.max_body_bytes} bytes")
        body = validate_body(raw, chat)
        if isinstance(body, Response):
            return body
        model = body["model"]
        route = tenant.routes.get(model)
        if model not in tenant.models or route is None:
            # The same answer for "exists for someone else" and "exists nowhere": nothing leaks.
            return error(
                403, f"model '{model}' is not available to this API key", code="model_not_allowed", param="model"
            )
        request_id = request.headers.get("x-request-id") or os.urandom(16).hex()
        ids = {"x-request-id": request_id}

        if not scheduler.has_room(name):
            # Refused before the shared limit is charged: a refused request must not use up the tenant's quota.
            return queue_full(name, model, ids)
        cost = len(raw) // 4 + int(
            body.get("max_completion_tokens") or body.get("max_tokens") or settings.default_max_tokens
        )
        decision = await limiter.check(name, limits.rpm, limits.tpm, cost)
        if decision is None:
            return error(
                503,
                "rate limiting unavailable; try again shortly",
                code="ratelimit_unavailable",
                headers={"retry-after": "1", **ids},
            )
        if not decision.allowed:
            return too_many(name, model, limits, decision, ids)

        queue_gauge, inflight_gauge = metrics.queue_depth.labels(name), metrics.inflight.labels(name)
        try:
            queue_gauge.inc()
            try:
                await scheduler.acquire(name, tenant.weight, limits.max_concurrency, limits.max_queue)
            finally:
                queue_gauge.dec()
        except QueueFull:
            return queue_full(name, model, ids)
        inflight_gauge.inc()
        released = False
        handed_to_stream = False  # from then on the stream's generator releases the slot

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                inflight_gauge.dec()
                scheduler.release(name)

        try:
            stream = bool(body.get("stream"))
            strip_usage = False
            if stream and not (body.get("stream_options") or {}).get("include_usage"):
                # Ask the engine for usage so tokens are counted, and hide that extra chunk from the client.
                body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
                raw, strip_usage = json.dumps(body).encode(), True
            choices = [(u, tenant.upstreams[u]) for u in candidates(route, request.headers.get("x-request-id"))]
            path = "/v1/chat/completions" if chat else "/v1/completions"
            try:
                opened = await upstreams.open(choices, path, raw, request_id)
            except UpstreamFailure as failure:
                metrics.requests.labels(name, model, "", str(failure.status)).inc()
                return error(failure.status, str(failure), code="upstream_error", headers=ids)
            upstream, response = opened.name, opened.response
            headers = {**response_headers(response), "x-upstream": upstream, **ids}

            def count(prompt: int, completion: int) -> None:
                metrics.tokens.labels(name, model, "prompt").inc(prompt)
                metrics.tokens.labels(name, model, "completion").inc(completion)

            if not stream or response.status != 200:
                try:
                    payload = await response.read()
                except Exception:  # noqa: BLE001 - any read failure is the upstream's fault
                    response.release()
                    metrics.requests.labels(name, model, upstream, "502").inc()
                    return error(
                        502, f"upstream {upstream!r} broke off the response", code="upstream_error", headers=ids
                    )
                counted = usage_of(payload) if response.status == 200 else None
                if counted:
                    count(*counted)
                metrics.requests.labels(name, model, upstream, str(response.status)).inc()
                metrics.duration.labels(name, model).observe(time.perf_counter() - started)
                return Response(payload, status_code=response.status, headers=headers)

            async def events():
                code = "200"
                try:
                    async for chunk in relay_events(response, strip_usage, count):
                        yield chunk
                except Exception:  # noqa: BLE001 - any upstream failure mid-stream ends it the same way
                    code = "502"
                    LOG.warning(
                        "upstream stream broke off",
                        extra={"tenant": name, "model": model, "upstream": upstream, "request_id": request_id},
                    )
                    # Headers are long gone: tell the client in-band, as OpenAI does (its client raises on it).
                    problem = {
                        "error": {
                            "message": f"upstream {upstream!r} broke off the stream",
                            "type": "api_error",
                            "param": None,
                            "code": "upstream_error",
                        }
                    }
                    yield b"data: " + json.dumps(problem).encode() + b"\n\n"
                finally:
                    response.release()
                    release()
                    metrics.requests.labels(name, model, upstream, code).inc()
                    metrics.duration.labels(name, model).observe(time.perf_counter() - started)

            handed_to_stream = True
            return StreamingResponse(events(), status_code=200, headers=headers, media_type="text/event-stream")
        finally:
            if not handed_to_stream:
                release()

    async def chat_completions(request: Request) -> Response:
        return await complete(request, chat=True)

    async def completions(request: Request) -> Response:
        return await complete(request, chat=False)

    async def models(request: Request) -> Response:
        who = authenticate(request)
        if isinstance(who, Response):
            return who
        _, tenant = who
        data = [{"id": model, "object": "model", "created": 0, "owned_by": "gpu-platform"} for model in tenant.models]
        return JSONResponse({"object": "list", "data": data})

    async def healthz(_: Request) -> Response:
        return Response("ok")

    async def readyz(_: Request) -> Response:
        if state.draining:
            return Response("draining", status_code=503)
        if settings.fail_closed and not limiter.backend_up:
            return Response("rate-limit backend unavailable", status_code=503)
        return Response("ready")

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette):
        await upstreams.start()
        watcher = asyncio.create_task(watch_config(state))
        try:
            yield
        finally:
            watcher.cancel()
            await upstreams.close()
            await limiter.close()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = state
    return app
