"""Starlette application: the OpenAI-compatible routes plus /health and /metrics."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from . import openai_format as fmt
from .api_requests import ChatCompletionRequest, CompletionRequest
from .engine import Generation, SlotEngine
from .generation import generate_tokens
from .metrics import EngineMetrics
from .prefix_cache import PrefixCache, block_hashes
from .settings import WorkerSettings


class MockWorker:
    """Request handling for one worker process; holds the engine and its metrics."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.metrics = EngineMetrics(settings.engine, settings.models)
        self.engine = SlotEngine(
            models=settings.models,
            slots=settings.slots,
            prefill_seconds=settings.prefill_seconds,
            decode_seconds_per_token=settings.decode_seconds_per_token,
            metrics=self.metrics,
            prefill_seconds_per_token=settings.prefill_seconds_per_token,
            prefill_concurrency=settings.prefill_concurrency,
            cache=PrefixCache(settings.cache_tokens, settings.block_size) if settings.cache_tokens else None,
            stream_interval=settings.stream_interval,
        )
        self._models = frozenset(settings.models)
        self._failures = random.Random(settings.seed)
        self._started = int(time.time())

    # --- routes -------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def list_models(self, request: Request) -> Response:
        data = [
            {
                "id": name,
                "object": "model",
                "created": self._started,
                "owned_by": "mock-worker",
                "root": name,
                "parent": None,
                "max_model_len": self.settings.max_tokens_cap,
            }
            for name in self.settings.models
        ]
        return fmt.json_response({"object": "list", "data": data})

    def _injected_failure(self) -> Response | None:
        # Checked before parsing: a failing engine answers 500 whatever it is sent.
        rate = self.settings.failure_rate
        if rate and self._failures.random() < rate:
            return fmt.error_response(
                500,
                f"Injected failure (failure rate {rate}); set MOCK_WORKER_FAILURE_RATE=0 to disable.",
                type_="server_error",
                code="injected_failure",
            )
        return None

    async def chat_completions(self, request: Request) -> Response:
        if failure := self._injected_failure():
            return failure
        try:
            req = ChatCompletionRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return fmt.validation_error_response(exc)
        texts = [message.text() for message in req.messages]
        prompt = "\n".join(texts)
        return await self._serve(req, prompt, req.requested_tokens(), fmt.CHAT_COMPLETIONS)

    async def completions(self, request: Request) -> Response:
        if failure := self._injected_failure():
            return failure
        try:
            req = CompletionRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return fmt.validation_error_response(exc)
        prompt = req.prompt_text()
        return await self._serve(req, prompt, req.requested_tokens(), fmt.COMPLETIONS)

    # --- shared request path ------------------------------------------------------------

    async def _serve(
        self,
        req: ChatCompletionRequest | CompletionRequest,
        prompt: str,
        max_tokens: int | None,
        endpoint: fmt.CompletionFormat,
    ) -> Response:
        if req.model not in self._models:
            return fmt.error_response(
                404,
                f"The model '{req.model}' does not exist; this worker serves "
                f"{', '.join(self.settings.models)} (see GET /v1/models).",
                param="model",
                code="model_not_found",
            )
        count = max_tokens or self.settings.default_max_tokens
        if count > self.settings.max_tokens_cap:
            return fmt.error_response(
                400,
                f"max_tokens={count} exceeds this worker's limit of {self.settings.max_tokens_cap} "
                "(MOCK_WORKER_MAX_TOKENS_CAP).",
                param="max_tokens",
            )
        seed = req.seed if req.seed is not None else self.settings.seed
        words = prompt.split()  # a token is a word (generation.estimate_prompt_tokens)
        blocks = tuple(block_hashes(words, self.settings.block_size)) if self.engine.cache is not None else ()
        gen = Generation(
            model=req.model,
            prompt_tokens=max(1, len(words)),
            tokens=generate_tokens(prompt, count, seed),
            prompt_blocks=blocks,
        )
        request_id = f"{endpoint.id_prefix}-{uuid.uuid4().hex}"
        created = int(time.time())
        if req.stream:
            writer = fmt.ChunkWriter(
                request_id=request_id, created=created, gen=gen, endpoint=endpoint, include_usage=req.include_usage
            )
            if self.settings.decode_seconds_per_token:
                return StreamingResponse(
                    self._stream(gen, writer, endpoint),
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache"},
                )
            # Without decode time all tokens are ready at once: the same SSE bytes in one body
            # make streaming ~3x faster as a benchmark upstream than a chunk-by-chunk response.
            await self.engine.run(gen)
            return Response(
                self._whole_stream(writer, gen, endpoint),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        await self.engine.run(gen)
        return fmt.json_response(endpoint.response(request_id, created, gen))

    async def _stream(
        self, gen: Generation, writer: fmt.ChunkWriter, endpoint: fmt.CompletionFormat
    ) -> AsyncIterator[bytes]:
        if endpoint.role_first:
            yield writer.role()
        async for piece in self.engine.stream(gen):
            yield writer.token(piece)
        yield writer.finish()
        if writer.include_usage:
            yield writer.usage()
        yield fmt.SSE_DONE

    def _whole_stream(self, writer: fmt.ChunkWriter, gen: Generation, endpoint: fmt.CompletionFormat) -> bytes:
        chunks = [writer.role()] if endpoint.role_first else []
        chunks += [writer.token(piece) for piece in gen.tokens]
        chunks.append(writer.finish())
        if writer.include_usage:
            chunks.append(writer.usage())
        chunks.append(fmt.SSE_DONE)
        return b"".join(chunks)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return fmt.error_response(
        exc.status_code, f"{request.method} {request.url.path}: {exc.detail}.", code=str(exc.status_code)
    )


def create_app(settings: WorkerSettings) -> Starlette:
    worker = MockWorker(settings)
    routes = [
        Route("/health", worker.health, methods=["GET"]),
        Route("/metrics", worker.metrics_endpoint, methods=["GET"]),
        Route("/v1/models", worker.list_models, methods=["GET"]),
        Route("/v1/chat/completions", worker.chat_completions, methods=["POST"]),
        Route("/v1/completions", worker.completions, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.worker = worker
    return app
