"""A proxied completion: authenticate, read and check the body, limit, queue, route, relay, account."""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson

from services.gateway.asgi import Headers, Reply, read_body, send_reply, send_stream
from services.gateway.config import Tenant
from services.gateway.errors import error
from services.gateway.metrics import GatewayMetrics
from services.gateway.picker import Picker
from services.gateway.priority import SHEDDABLE, priority_rank
from services.gateway.ratelimit import Decision, RateLimiter
from services.gateway.routing import candidates
from services.gateway.scheduler import FairScheduler, QueueFull
from services.gateway.settings import GatewaySettings
from services.gateway.state import GatewayState
from services.gateway.upstream import HOP_HEADERS, UpstreamFailure, Upstreams, relay_events, usage_of
from services.gateway.upstream_client import UpstreamError, UpstreamResponse

LOG = logging.getLogger("gateway")
# A client's request id is passed on and echoed only if it is a plain token; otherwise the gateway makes one.
REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
PATHS = {True: "/v1/chat/completions", False: "/v1/completions"}


def validate_body(raw: bytes, chat: bool) -> dict[str, Any] | Reply:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
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
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        return error(400, "stream_options must be an object", param="stream_options")
    return body


def too_many(tenant: Tenant, decision: Decision, ids: Headers) -> Reply:
    limits = tenant.limits
    headers = [(b"retry-after", b"%d" % max(1, int(decision.reset_seconds + 0.999))), *ids]
    for kind, limit, remaining in (
        (b"requests", limits.rpm, decision.remaining_requests),
        (b"tokens", limits.tpm, decision.remaining_tokens),
    ):
        if limit is not None:
            headers += (
                (b"x-ratelimit-limit-" + kind, b"%d" % limit),
                (b"x-ratelimit-remaining-" + kind, b"%d" % remaining),
                (b"x-ratelimit-reset-" + kind, b"%.0fs" % decision.reset_seconds),
            )
    return error(
        429,
        f"rate limit reached for {decision.reason} per minute",
        code=f"rate_limit_{decision.reason}",
        headers=headers,
    )


def queue_full(ids: Headers) -> Reply:
    return error(
        429,
        "too many requests in flight for this tenant",
        code="rate_limit_concurrency",
        headers=[(b"retry-after", b"1"), *ids],
    )


@dataclass(slots=True)
class Call:
    """One authenticated, well-formed request, as admission, the relay and the metrics see it."""

    tenant: str
    model: str
    ids: Headers  # the x-request-id header, passed on and echoed
    started: float
    served: int = 0  # prompt + completion tokens the engine reported, for the fair queue's settle


class Completions:
    def __init__(
        self,
        settings: GatewaySettings,
        state: GatewayState,
        limiter: RateLimiter,
        scheduler: FairScheduler,
        upstreams: Upstreams,
        metrics: GatewayMetrics,
        picker: Picker,
    ) -> None:
        self.settings, self.state, self.limiter = settings, state, limiter
        self.scheduler, self.upstreams, self.metrics = scheduler, upstreams, metrics
        self.picker = picker

    async def __call__(self, scope, receive, send, chat: bool) -> None:
        """Answer one request; every path that does not reach an upstream ends in an error reply."""
        started = time.perf_counter()
        reply = await self._serve(dict(scope["headers"]), receive, send, chat, started)
        if reply is not None:
            await send_reply(send, reply)

    async def _serve(self, headers, receive, send, chat: bool, started: float) -> Reply | None:
        who = self.state.authenticate(headers)
        if isinstance(who, Reply):
            return who
        name, tenant = who
        refused = self.limiter.refused_now(name)
        if refused is not None:
            # A flooding tenant is turned away before its body is read or parsed.
            self.metrics.refused(name, "", refused.reason)
            return too_many(tenant, refused, [])
        limit = self.settings.max_body_bytes
        declared = headers.get(b"content-length", b"")
        raw = None if declared.isdigit() and int(declared) > limit else await read_body(receive, limit)
        if raw is None:
            return error(413, f"request body larger than {limit} bytes")
        body = validate_body(raw, chat)
        if isinstance(body, Reply):
            return body
        model = body["model"]
        route = tenant.routes.get(model)
        if route is None or model not in tenant.models:
            # The same answer for "exists for someone else" and "exists nowhere": nothing leaks.
            return error(
                403, f"model '{model}' is not available to this API key", code="model_not_allowed", param="model"
            )
        given_id = headers.get(b"x-request-id")
        sticky = given_id is not None and REQUEST_ID.fullmatch(given_id) is not None
        # An id for tracing, not a secret: no system call for randomness on every request.
        request_id = given_id if sticky else b"%032x" % random.getrandbits(128)
        call = Call(name, model, [(b"x-request-id", request_id)], started)
        cost = len(raw) // 4 + int(
            body.get("max_completion_tokens") or body.get("max_tokens") or self.settings.default_max_tokens
        )
        choices = [(u, tenant.upstreams[u]) for u in candidates(route, request_id.decode() if sticky else None)]
        rank = priority_rank(headers)
        if rank is None:
            return error(400, "x-priority must be critical, standard or sheddable", param="x-priority")
        if rank == SHEDDABLE and self.picker.saturated(choices[0][1]):
            # Shed before the tenant's limits are charged: the request never ran.
            self.metrics.refused(name, model, "saturated")
            return error(
                429,
                "the model's engines are saturated; sheddable requests are refused for now",
                code="engines_saturated",
                headers=[(b"retry-after", b"1"), *call.ids],
            )
        refusal = await self._admit(call, tenant, cost, rank)
        if refusal is not None:
            return refusal
        holding = self.metrics.holding(name)
        holding.inc()
        pod = None
        try:
            # The route chose the worker; the picker chooses its pod (and the pods to retry on).
            choices, pod = self.picker.choose(name, route.picker, choices, body, headers)
            return await self._relay(send, receive, call, choices, body, raw, chat)
        finally:
            self.picker.done(pod)
            holding.dec()
            if call.served:
                self.scheduler.settle(name, cost, call.served)
            self.scheduler.release(name)

    async def _admit(self, call: Call, tenant: Tenant, cost: int, rank: int = 1) -> Reply | None:
        """Charge the shared limits and take an upstream slot (None), or say why not."""
        name, limits = call.tenant, tenant.limits
        if not self.scheduler.has_room(name):
            # Refused before the shared limit is charged: a refused request must not use up the tenant's quota.
            self.metrics.refused(name, call.model, "queue")
            return queue_full(call.ids)
        decision = await self.limiter.check(name, limits.rpm, limits.tpm, cost)
        if decision is None:
            return error(
                503,
                "rate limiting unavailable; try again shortly",
                code="ratelimit_unavailable",
                headers=[(b"retry-after", b"1"), *call.ids],
            )
        if not decision.allowed:
            self.metrics.refused(name, call.model, decision.reason)
            return too_many(tenant, decision, call.ids)
        if self.scheduler.try_acquire(name, tenant.weight, limits.max_concurrency, limits.max_queue, cost):
            return None
        queued = self.metrics.queued(name)
        queued.inc()
        try:
            await self.scheduler.acquire(name, tenant.weight, limits.max_concurrency, limits.max_queue, cost, rank)
        except QueueFull:
            self.metrics.refused(name, call.model, "queue")
            return queue_full(call.ids)
        finally:
            queued.dec()
        return None

    async def _relay(self, send, receive, call: Call, choices, body: dict, raw: bytes, chat: bool) -> Reply | None:
        stream = body.get("stream") is True
        strip_usage = False
        if stream and not (body.get("stream_options") or {}).get("include_usage"):
            # Ask the engine for usage so tokens are counted, and hide that extra chunk from the client.
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            raw, strip_usage = orjson.dumps(body), True
        try:
            opened = await self.upstreams.open(choices, PATHS[chat], raw, call.ids[0][1])
        except UpstreamFailure as failure:
            self.metrics.request(call.tenant, call.model, "", str(failure.status))
            return error(failure.status, str(failure), code="upstream_error", headers=call.ids)
        upstream, response = opened.name, opened.response
        headers = response.headers(HOP_HEADERS)
        headers += ((b"x-upstream", upstream.encode()), *call.ids)
        if stream and response.status == 200:
            await self._stream(send, receive, call, upstream, response, strip_usage, headers)
            return None
        try:
            payload = await response.read()
        except UpstreamError:
            self.metrics.request(call.tenant, call.model, upstream, "502")
            return error(502, f"upstream {upstream!r} broke off the response", code="upstream_error", headers=call.ids)
        finally:
            response.release()
        headers.append((b"content-length", b"%d" % len(payload)))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        # Accounting after the last byte is handed to the server: off the client's wait.
        self.metrics.request(
            call.tenant, call.model, upstream, str(response.status), time.perf_counter() - call.started
        )
        counted = usage_of(payload) if response.status == 200 else None
        if counted:
            self.metrics.count_tokens(call.tenant, call.model, *counted)
            call.served = counted[0] + counted[1]
        return None

    async def _stream(
        self, send, receive, call: Call, upstream: str, response: UpstreamResponse, strip_usage: bool, headers: Headers
    ) -> None:
        code = "200"
        client_gone = False

        def on_disconnect() -> None:
            nonlocal client_gone
            client_gone = True
            response.abort()  # the engine sees its connection close and stops generating

        def count(prompt: int, completion: int) -> None:
            self.metrics.count_tokens(call.tenant, call.model, prompt, completion)
            call.served = prompt + completion

        async def events():
            nonlocal code
            try:
                async for chunk in relay_events(response, strip_usage, count):
                    yield chunk
            except UpstreamError:
                if client_gone:
                    code = "499"  # nginx's "client closed request": nobody is left to tell
                    return
                code = "502"
                LOG.warning(
                    "upstream stream broke off",
                    extra={
                        "tenant": call.tenant,
                        "model": call.model,
                        "upstream": upstream,
                        "request_id": call.ids[0][1].decode(),
                    },
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
                yield b"data: " + orjson.dumps(problem) + b"\n\n"

        if not any(header == b"content-type" for header, _ in headers):
            headers.append((b"content-type", b"text/event-stream"))
        try:
            await send_stream(send, receive, 200, headers, events(), on_disconnect)
        finally:
            response.release()
            self.metrics.request(call.tenant, call.model, upstream, code, time.perf_counter() - call.started)
