"""A proxied completion: authenticate, read and check the body, limit, queue, route, relay, account."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time

import orjson

from services.gateway.asgi import Headers, Reply, read_body, send_reply, send_stream
from services.gateway.call import ActiveCalls, Call, Outcome, queue_full, shutting_down, too_many
from services.gateway.config import TenantEntry
from services.gateway.errors import error
from services.gateway.limit_scripts import ScriptFailed
from services.gateway.metrics import GatewayMetrics
from services.gateway.picker import Picker
from services.gateway.priority import SHEDDABLE, priority_rank
from services.gateway.ratelimit import Admission, RateLimiter
from services.gateway.request_fields import (
    MAX_CHARGE,
    CompletionEndpoint,
    prompt_estimate,
    requested_tokens,
    token_charge,
    validate_body,
)
from services.gateway.routing import candidates
from services.gateway.scheduler import FairScheduler, QueueFull
from services.gateway.settings import GatewaySettings
from services.gateway.state import GatewayState
from services.gateway.upstream import (
    HOP_HEADERS,
    EventTooLarge,
    Tally,
    UpstreamFailure,
    Upstreams,
    relay_events,
    usage_of,
)
from services.gateway.upstream_client import UpstreamError, UpstreamResponse, UpstreamTimeout, UpstreamTooLarge

LOG = logging.getLogger("gateway")
# A client's request id is passed on and echoed only if it is a plain token; otherwise the gateway makes one.
REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


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
        self.active = ActiveCalls()

    def _record(self, call: Call, upstream: str, code: str, seconds: float | None = None) -> None:
        call.recorded = True
        self.metrics.request(call.tenant, call.model, upstream, code, seconds)

    def _count(self, call: Call, outcome: Outcome, reported: tuple[int, int] | None, outputs: int) -> None:
        """Tokens of a request an engine answered: its report, else the prompt estimate the charge
        used plus the output chunks relayed (the client left, the stream was cut, no report came).
        Without a report Redis keeps the whole charge: `outcome.used` stays None."""
        if reported:
            outcome.used = call.served = reported[0] + reported[1]
            self.metrics.count_tokens(call.tenant, call.model, *reported)
        else:
            self.metrics.count_tokens(call.tenant, call.model, outcome.prompt, outputs)

    async def __call__(self, scope, receive, send, endpoint: CompletionEndpoint) -> None:
        """Answer one request; every path that does not reach an upstream ends in an error reply."""
        call = Call(time.perf_counter())
        self.active.add(call)
        try:
            reply = await self._serve(scope, receive, send, endpoint, call)
        except asyncio.CancelledError:
            if not (call.left or call.drained):
                raise
            call.task.uncancel()
            reply = shutting_down(call.ids) if call.drained and not (call.left or call.recorded) else None
            if not call.recorded:  # else the relay counted it, with its upstream
                self.metrics.request(call.tenant, call.model, "", "503" if reply else "499")
        finally:
            call.close()
            self.active.discard(call)
        if reply is not None:
            await send_reply(send, reply)

    async def _serve(self, scope, receive, send, endpoint: CompletionEndpoint, call: Call) -> Reply | None:
        raw_headers = scope["headers"]
        headers = dict(raw_headers)
        who = self.state.authenticate(headers, raw_headers)
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
            # The rest of the body is never read: keeping the connection would have the server take
            # it in (and discard it) until the request timeout, however much the client sends.
            return error(413, f"request body larger than {limit} bytes", headers=[(b"connection", b"close")])
        body = validate_body(raw, endpoint)
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
        call.tenant, call.model, call.ids = name, model, [(b"x-request-id", request_id)]
        limits = tenant.limits
        output_cap = limits.output_cap(model, self.settings.default_max_tokens)
        rewrite = False
        if requested_tokens(body) is None:
            # What is charged is what the engine is allowed to generate: say so to the engine.
            body["max_tokens"], rewrite = output_cap, True
        # Of the body as the client sent it, before any rewrite below.
        prompt = prompt_estimate(len(raw), body, endpoint)
        cost = token_charge(prompt, body, output_cap, endpoint)
        # A tenant without tpm is still bounded by what the limit script counts exactly (tpm never exceeds it).
        ceiling = MAX_CHARGE if limits.tpm is None else limits.tpm
        if cost > ceiling:
            # Never admissible, so not a 429 (clients retry those): say what to change.
            whose = "the gateway's most" if limits.tpm is None else "this key's"
            return error(
                400,
                f"this request may use up to {cost} tokens, more than {whose} {ceiling} tokens per minute; "
                "lower max_tokens, n, the number of prompts or the prompt",
                code="tokens_exceed_limit",
                param="max_tokens",
                headers=call.ids,
            )
        stream = body.get("stream") is True
        strip_usage = stream and not (body.get("stream_options") or {}).get("include_usage")
        if strip_usage:
            # Ask the engine for usage so tokens are counted, and hide it from the client.
            body["stream_options"], rewrite = {**(body.get("stream_options") or {}), "include_usage": True}, True
        if rewrite:
            raw = orjson.dumps(body)
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
        call.watch(scope, receive)
        admission = await self._admit(call, tenant, cost, rank)
        if isinstance(admission, Reply):
            return admission
        holding = self.metrics.holding(name)
        holding.inc()
        outcome = Outcome(prompt)
        pod = None
        try:
            # The route chose the worker; the picker chooses its pod (and the pods to retry on).
            choices, pod = self.picker.choose(name, route.picker, choices, body, headers)
            return await self._relay(send, call, choices, stream, strip_usage, raw, endpoint.path, outcome)
        finally:
            self.picker.done(pod)
            holding.dec()
            if call.served:
                self.scheduler.settle(name, cost, call.served)
            self.scheduler.release(name)
            self.limiter.finish(admission, outcome.used, outcome.reached, limits.max_concurrency)

    async def _admit(self, call: Call, tenant: TenantEntry, cost: int, rank: int = 1) -> Admission | Reply:
        """Charge the shared limits, take a slot in the tenant's cap and an upstream slot, or say why not."""
        name, limits = call.tenant, tenant.limits
        cap = limits.max_concurrency
        if not self.scheduler.has_room(name) or self.limiter.queue_full_here(name, limits.max_queue):
            # Refused before the shared limit is charged: a refused request must not use up the tenant's quota.
            self.metrics.refused(name, call.model, "queue")
            return queue_full(call.ids)
        try:
            result = await self.limiter.admit(name, limits.rpm, limits.tpm, cost, cap, limits.max_queue)
        except ScriptFailed:
            self.metrics.request(name, call.model, "", "500")
            return error(
                500,
                "the gateway could not check this request against its limits; it was not served",
                code="ratelimit_error",
                headers=call.ids,
            )
        if result is None:
            return error(
                503,
                "rate limiting unavailable; try again shortly",
                code="ratelimit_unavailable",
                headers=[(b"retry-after", b"1"), *call.ids],
            )
        decision, admission = result
        if admission is None:
            self.metrics.refused(name, call.model, decision.reason)
            return queue_full(call.ids) if decision.reason == "queue" else too_many(tenant, decision, call.ids)
        try:
            if not admission.holding:
                queued = self.metrics.queued(name)
                queued.inc()
                try:
                    await self.limiter.wait_for_slot(admission, cap)
                finally:
                    queued.dec()
            # Holding a shared slot, the tenant's local queue never overflows: the shared cap bounds it.
            local_queue = cap if admission.shared else limits.max_queue
            if self.scheduler.try_acquire(name, tenant.weight, cap, local_queue, cost):
                return admission
            queued = self.metrics.queued(name)
            queued.inc()
            try:
                await self.scheduler.acquire(name, tenant.weight, cap, local_queue, cost, rank)
            finally:
                queued.dec()
        except QueueFull:
            self.limiter.finish(admission, None, False, cap)
            self.metrics.refused(name, call.model, "queue")
            return queue_full(call.ids)
        except BaseException:  # the client left, or the drain ended it, while it waited
            self.limiter.finish(admission, None, False, cap)
            raise
        return admission

    async def _relay(
        self, send, call: Call, choices, stream: bool, strip_usage: bool, raw: bytes, path: str, outcome: Outcome
    ) -> Reply | None:
        # From here an engine may be working on it: a cancellation keeps the charge.
        outcome.reached = True
        try:
            # Engines key their work by this id (vLLM uses the header as its request id), and one engine may
            # serve several tenants: scoped by tenant, one tenant's ids can never collide with another's.
            opened = await self.upstreams.open(choices, path, raw, b"%s-%s" % (call.tenant.encode(), call.request_id))
        except UpstreamFailure as failure:
            outcome.reached = failure.reached
            self.metrics.request(call.tenant, call.model, "", str(failure.status))
            return error(failure.status, str(failure), code="upstream_error", headers=call.ids)
        upstream, response = opened.name, opened.response
        call.response = response
        if call.left or call.drained:  # it happened while the response was opening
            response.abort()
        headers = response.headers(HOP_HEADERS)
        headers += ((b"x-upstream", upstream.encode()), *call.ids)
        if stream and response.status == 200:
            await self._stream(send, call, upstream, response, strip_usage, headers, outcome)
            return None
        settings = self.settings
        try:
            payload = await response.read(
                settings.max_response_bytes, response.started + settings.upstream_timeout_seconds
            )
        except UpstreamError as exc:
            if response.status == 200:  # the engine was generating: its prompt at least is counted
                self._count(call, outcome, None, 0)
            if call.left:
                self._record(call, upstream, "499")
                return None
            if call.drained:
                self._record(call, upstream, "503")
                return shutting_down(call.ids)
            status, problem = 502, f"upstream {upstream!r} broke off the response"
            if isinstance(exc, UpstreamTimeout):
                status, problem = (
                    504,
                    f"upstream {upstream!r} did not finish within {settings.upstream_timeout_seconds:g} s",
                )
            elif isinstance(exc, UpstreamTooLarge):
                problem = f"upstream {upstream!r} sent a response larger than {settings.max_response_bytes} bytes"
            self._record(call, upstream, str(status))
            return error(status, problem, code="upstream_error", headers=call.ids)
        finally:
            response.release()
        call.response = None
        headers.append((b"content-length", b"%d" % len(payload)))
        try:
            # A send waits while the connection's write buffer is full: an earlier response on it still unread.
            call.sending = time.monotonic()
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            call.finished = True
            await send({"type": "http.response.body", "body": payload})
        finally:
            call.sending = 0.0
            # Accounting after the last byte is handed to the server (off the client's wait), and
            # also when the client left or stopped reading meanwhile: the engine did the work all the same.
            code = "499" if call.stalled else str(response.status)
            self._record(call, upstream, code, time.perf_counter() - call.started)
            if response.status == 200:
                self._count(call, outcome, usage_of(payload), 0)
            else:
                outcome.used = 0  # an engine that refused the request generated nothing
        return None

    async def _stream(
        self,
        send,
        call: Call,
        upstream: str,
        response: UpstreamResponse,
        strip_usage: bool,
        headers: Headers,
        outcome: Outcome,
    ) -> None:
        code = "200"
        tally = Tally()

        def problem(message: str, kind: str) -> bytes:
            # Headers are long gone: tell the client in-band, as OpenAI does (its client raises on it).
            body = {"error": {"message": message, "type": "api_error", "param": None, "code": kind}}
            return b"data: " + orjson.dumps(body) + b"\n\n"

        async def events():
            nonlocal code
            try:
                async for chunk in relay_events(response, strip_usage, tally, self.settings.max_event_bytes):
                    yield chunk
            except EventTooLarge:
                response.abort()
                code = "502"
                yield problem(f"upstream {upstream!r} sent an event over {self.settings.max_event_bytes} bytes",
                              "upstream_error")  # fmt: skip
            except UpstreamError:
                if call.left:
                    code = "499"  # nginx's "client closed request": nobody is left to tell
                    return
                if call.drained:
                    code = "503"
                    yield problem("the gateway is shutting down; the stream was cut short", "server_shutting_down")
                    return
                code = "502"
                LOG.warning(
                    "upstream stream broke off",
                    extra={
                        "tenant": call.tenant,
                        "model": call.model,
                        "upstream": upstream,
                        "request_id": call.request_id.decode(),
                    },
                )
                yield problem(f"upstream {upstream!r} broke off the stream", "upstream_error")

        if not any(header == b"content-type" for header, _ in headers):
            headers.append((b"content-type", b"text/event-stream"))
        try:
            await send_stream(send, 200, headers, events(), call)
        finally:
            call.finished = True
            response.release()
            if call.stalled:
                code = "499"
            self._record(call, upstream, code, time.perf_counter() - call.started)
            # Counted once, at the end: the last report, else the estimate (a tenant that leaves
            # before the usage chunk is billed all the same).
            self._count(call, outcome, tally.usage, tally.outputs)
