"""The mock worker's HTTP API: OpenAI's chat and text completions (plain and SSE), models, health, metrics."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.mock_worker.engine import EngineFailure, Generation, MockEngine
from services.mock_worker.metrics import EngineMetrics
from services.mock_worker.settings import WorkerSettings


def error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


def usage(generation: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "total_tokens": generation.prompt_tokens + generation.completion_tokens,
    }


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def prompt_text(body: dict[str, Any], chat: bool) -> str:
    if chat:
        parts = []
        for message in body["messages"]:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(part.get("text", "") for part in content if isinstance(part, dict))
        return " ".join(parts)
    prompt = body["prompt"]
    return " ".join(prompt) if isinstance(prompt, list) else str(prompt)


def create_app(settings: WorkerSettings) -> Starlette:
    metrics = EngineMetrics(settings.engine)
    engine = MockEngine(settings, metrics)
    served = set(settings.models)
    created = int(time.time())

    async def parse(request: Request, chat: bool) -> dict[str, Any] | JSONResponse:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "request body is not valid JSON")
        if not isinstance(body, dict):
            return error(400, "request body must be a JSON object")
        field = "messages" if chat else "prompt"
        if "model" not in body:
            return error(400, "missing required field 'model'", param="model")
        if field not in body or (chat and not isinstance(body[field], list)):
            return error(400, f"missing or invalid required field '{field}'", param=field)
        if body["model"] not in served:
            return error(404, f"The model '{body['model']}' does not exist", param="model", code="model_not_found")
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or settings.default_max_tokens
        if not isinstance(limit, int) or limit < 1:
            return error(400, "max_tokens must be a positive integer", param="max_tokens")
        body["_max_tokens"] = min(limit, settings.max_tokens_cap)
        return body

    async def complete(request: Request, chat: bool) -> Response:
        body = await parse(request, chat)
        if isinstance(body, Response):
            return body
        model = body["model"]
        tokens = engine.generate(model, prompt_text(body, chat), body["_max_tokens"])
        try:
            first, generation = await anext(tokens)
        except EngineFailure as exc:
            return error(500, str(exc), kind="server_error")
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        now = int(time.time())
        if not body.get("stream"):
            text = first + "".join([token async for token, generation in tokens])
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": generation.finish_reason}
                if chat
                else {"index": 0, "text": text, "logprobs": None, "finish_reason": generation.finish_reason}
            )
            return JSONResponse(
                {
                    "id": rid,
                    "object": "chat.completion" if chat else "text_completion",
                    "created": now,
                    "model": model,
                    "choices": [choice],
                    "usage": usage(generation),
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(text: str | None, finish: str | None = None, first_chunk: bool = False) -> bytes:
            if chat:
                delta = {"role": "assistant", "content": text} if first_chunk else ({"content": text} if text is not None else {})
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            return sse({"id": rid, "object": kind, "created": now, "model": model, "choices": [choice]})

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield chunk(first, first_chunk=True)
                last = generation
                async for token, last in tokens:
                    yield chunk(token)
                yield chunk(None, finish=last.finish_reason)
                if include_usage:
                    yield sse({"id": rid, "object": kind, "created": now, "model": model, "choices": [], "usage": usage(last)})
                yield sse("[DONE]")
            finally:
                # A client that hangs up must give its slot back now, not when the generator is collected.
                await tokens.aclose()

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def chat_completions(request: Request) -> Response:
        return await complete(request, chat=True)

    async def completions(request: Request) -> Response:
        return await complete(request, chat=False)

    async def models(_: Request) -> Response:
        data = [{"id": name, "object": "model", "created": created, "owned_by": "mock-worker"} for name in settings.models]
        return JSONResponse({"object": "list", "data": data})

    async def health(_: Request) -> Response:
        return Response(status_code=200)

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ]
    )
