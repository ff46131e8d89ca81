"""OpenAI wire format: response bodies, stream chunks and error objects."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.responses import Response

from .engine import Generation

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def json_response(body: dict[str, Any], status_code: int = 200) -> Response:
    return Response(_dumps(body).encode(), status_code=status_code, media_type="application/json")


def error_response(
    status_code: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> Response:
    return json_response({"error": {"message": message, "type": type_, "param": param, "code": code}}, status_code)


def validation_error_response(exc: ValidationError) -> Response:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return error_response(400, f"Request body is not valid JSON: {first['msg']}.", code="invalid_json")
    param = ".".join(str(part) for part in first["loc"]) or None
    where = f"'{param}'" if param else "request body"
    return error_response(400, f"Invalid {where}: {first['msg']}.", param=param)


def usage(gen: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "total_tokens": gen.prompt_tokens + gen.completion_tokens,
    }


def chat_completion(request_id: str, created: int, gen: Generation) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": gen.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(gen.tokens), "refusal": None},
                "logprobs": None,
                "finish_reason": gen.finish_reason,
            }
        ],
        "usage": usage(gen),
    }


def text_completion(request_id: str, created: int, gen: Generation) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": gen.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "text": "".join(gen.tokens),
                "logprobs": None,
                "finish_reason": gen.finish_reason,
            }
        ],
        "usage": usage(gen),
    }


def _chat_choice(piece: str | None, finish_reason: str | None) -> dict[str, Any]:
    delta: dict[str, Any] = {} if piece is None else {"content": piece}
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def _text_choice(piece: str | None, finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish_reason}


@dataclass(frozen=True)
class CompletionFormat:
    """What differs between the chat completions and the completions endpoint's responses."""

    id_prefix: str  # of the response's id
    chunk_object: str  # a stream chunk's `object`
    response: Callable[[str, int, Generation], dict[str, Any]]  # the whole response: (id, created, generation)
    choice: Callable[[str | None, str | None], dict[str, Any]]  # a streamed choice: (token, finish reason)
    role_first: bool  # a stream opens with the assistant's role


CHAT_COMPLETIONS = CompletionFormat("chatcmpl", "chat.completion.chunk", chat_completion, _chat_choice, role_first=True)
COMPLETIONS = CompletionFormat("cmpl", "text_completion", text_completion, _text_choice, role_first=False)

SSE_DONE = b"data: [DONE]\n\n"


class ChunkWriter:
    """Builds one stream's chunks; with include_usage every chunk carries `usage: null`
    and a last chunk with empty choices carries the totals, as OpenAI does.

    The fields shared by every chunk are serialised once per stream: encoding the whole
    chunk per token dominated the cost of streaming."""

    def __init__(
        self, *, request_id: str, created: int, gen: Generation, endpoint: CompletionFormat, include_usage: bool
    ) -> None:
        base = {
            "id": request_id,
            "object": endpoint.chunk_object,
            "created": created,
            "model": gen.model,
            "system_fingerprint": None,
        }
        self._prefix = b"data: " + _dumps(base)[:-1].encode() + b',"choices":'
        self._suffix = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._gen = gen
        self._choice = endpoint.choice
        self.include_usage = include_usage

    def _chunk(self, choices: list[dict[str, Any]]) -> bytes:
        return self._prefix + _dumps(choices).encode() + self._suffix

    def role(self) -> bytes:
        return self._chunk(
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]
        )

    def token(self, piece: str) -> bytes:
        return self._chunk([self._choice(piece, None)])

    def finish(self) -> bytes:
        return self._chunk([self._choice(None, self._gen.finish_reason)])

    def usage(self) -> bytes:
        return self._prefix + b'[],"usage":' + _dumps(usage(self._gen)).encode() + b"}\n\n"
