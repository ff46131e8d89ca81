"""The fields of OpenAI's completion requests the gateway checks, and the token charge they imply.

Every field is checked on its own, whatever the others hold: the charge is computed from the
token fields, so one of them left unchecked (say `max_tokens` next to a null
`max_completion_tokens`) would let a tenant charge itself a negative amount. Fields the API
does not define (engine extensions such as vLLM's `top_k`) pass through unchecked; they never
enter the charge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from services.gateway.asgi import Reply
from services.gateway.errors import error

# Token counts above this are refused: no engine generates more, and the charge stays an exact
# integer far below what the limit script's doubles hold exactly (2^53).
MAX_TOKENS = 2**31 - 1
MAX_N = 128  # OpenAI's own bound on `n`
MAX_BEST_OF = 20  # and on `best_of`
# The limit script takes charges up to 2^50 as exact integers; a request that may use more never runs.
MAX_CHARGE = 2**50
# orjson reads 1024 levels of nesting but writes 254: a deeper body could be read and checked, then
# fail with a 500 where the gateway writes it again (a rewrite for max_tokens, the picker's prompt text).
WRITE_DEPTH = 254


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: _integer(value) and low <= value <= high


def _number_in(low: float, high: float) -> Callable[[Any], bool]:
    return lambda value: _number(value) and low <= value <= high


def _stop(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(item, str) for item in value))


def _logit_bias(value: Any) -> bool:
    return isinstance(value, dict) and all(_number(bias) for bias in value.values())


def _stream_options(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("include_usage", False), bool)


def _messages(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(message, dict) for message in value)


def _prompt(value: Any) -> bool:
    # A string, strings, token ids, or lists of token ids.
    if isinstance(value, str):
        return True
    if not isinstance(value, list):
        return False
    return (
        all(isinstance(item, str) for item in value)
        or all(_integer(item) for item in value)
        or all(isinstance(item, list) and all(_integer(i) for i in item) for item in value)
    )


def _is(kind: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, kind)


_BOOL = _is(bool)
_STR = _is(str)
_OBJECT = _is(dict)
_LIST = _is(list)

# field -> (check, what a good value is); null is allowed for every optional field, as the API does.
_COMMON: dict[str, tuple[Callable[[Any], bool], str]] = {
    # The charge reads these four on either endpoint (engines take them on both), so both check all four.
    "max_tokens": (_int_in(1, MAX_TOKENS), f"an integer from 1 to {MAX_TOKENS}"),
    "max_completion_tokens": (_int_in(1, MAX_TOKENS), f"an integer from 1 to {MAX_TOKENS}"),
    "n": (_int_in(1, MAX_N), f"an integer from 1 to {MAX_N}"),
    "best_of": (_int_in(1, MAX_BEST_OF), f"an integer from 1 to {MAX_BEST_OF}"),
    "temperature": (_number_in(0, 2), "a number from 0 to 2"),
    "top_p": (_number_in(0, 1), "a number from 0 to 1"),
    "frequency_penalty": (_number_in(-2, 2), "a number from -2 to 2"),
    "presence_penalty": (_number_in(-2, 2), "a number from -2 to 2"),
    "stop": (_stop, "a string or a list of strings"),
    "stream": (_BOOL, "a boolean"),
    "stream_options": (_stream_options, "an object whose include_usage is a boolean"),
    "seed": (_integer, "an integer"),
    "user": (_STR, "a string"),
    "logit_bias": (_logit_bias, "an object mapping token ids to numbers"),
}
_CHAT = {
    **_COMMON,
    "logprobs": (_BOOL, "a boolean"),
    "top_logprobs": (_int_in(0, 20), "an integer from 0 to 20"),
    "tools": (_LIST, "a list"),
    "tool_choice": (lambda v: isinstance(v, (str, dict)), "a string or an object"),
    "parallel_tool_calls": (_BOOL, "a boolean"),
    "response_format": (_OBJECT, "an object"),
    "functions": (_LIST, "a list"),
    "function_call": (lambda v: isinstance(v, (str, dict)), "a string or an object"),
    "metadata": (_OBJECT, "an object"),
    "store": (_BOOL, "a boolean"),
    "reasoning_effort": (_STR, "a string"),
    "service_tier": (_STR, "a string"),
    "modalities": (_LIST, "a list"),
    "prediction": (_OBJECT, "an object"),
    "audio": (_OBJECT, "an object"),
}
_TEXT = {
    **_COMMON,
    "logprobs": (_int_in(0, 5), "an integer from 0 to 5"),
    "echo": (_BOOL, "a boolean"),
    "suffix": (_STR, "a string"),
}


@dataclass(frozen=True)
class CompletionEndpoint:
    """One of OpenAI's completion endpoints: its path (the gateway's and the engines'), its prompt, its fields."""

    path: str
    prompt_field: str  # required, and checked by `prompt_check`
    prompt_check: Callable[[Any], bool]
    prompt_problem: str  # the 400's message when the prompt fails its check
    fields: dict[str, tuple[Callable[[Any], bool], str]]  # the optional fields it defines (see _COMMON)


CHAT_COMPLETIONS = CompletionEndpoint(
    "/v1/chat/completions", "messages", _messages, "'messages' must be a list of message objects", _CHAT
)
COMPLETIONS = CompletionEndpoint(
    "/v1/completions", "prompt", _prompt, "'prompt' must be a string, a list of strings or a list of token ids", _TEXT
)


def validate_body(raw: bytes, endpoint: CompletionEndpoint) -> dict[str, Any] | Reply:
    """The parsed body, or a 400 in OpenAI's shape naming the first field that is wrong."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return error(400, "request body is not valid JSON")
    if not isinstance(body, dict):
        return error(400, "request body must be a JSON object")
    # Nesting needs an opening bracket per level: only a body with that many is written to find out.
    if raw.count(b"[") + raw.count(b"{") >= WRITE_DEPTH and (deep := _too_deep(body)) is not None:
        return error(400, f"'{deep}' is nested too deeply: at most {WRITE_DEPTH - 1} levels", param=deep)
    if not isinstance(body.get("model"), str) or not body["model"]:
        return error(400, "missing required field 'model'", param="model")
    if not endpoint.prompt_check(body.get(endpoint.prompt_field)):
        return error(400, endpoint.prompt_problem, param=endpoint.prompt_field)
    fields = endpoint.fields
    for name, value in body.items():  # a body holds a few fields: look each up, not every rule
        rule = fields.get(name)
        if rule is not None and value is not None and not rule[0](value):
            return error(400, f"'{name}' must be {rule[1]}", param=name)
    # Both are integers here: every endpoint checks n and best_of.
    if body.get("best_of") is not None and body["best_of"] < (body.get("n") or 1):
        return error(400, "'best_of' must be at least 'n'", param="best_of")
    return body


def _too_deep(body: dict[str, Any]) -> str | None:
    """The first field orjson cannot write back, or None: the depth it refuses is exactly its own."""
    try:
        orjson.dumps(body)
    except orjson.JSONEncodeError:
        for name, value in body.items():
            try:
                orjson.dumps({name: value})
            except orjson.JSONEncodeError:
                return name
    return None


def requested_tokens(body: dict[str, Any]) -> int | None:
    """The most output tokens per choice the request allows, None when it states none.

    An engine honours max_completion_tokens first and max_tokens otherwise; when both are given
    the larger is charged, so no spelling of the request is charged less than it may generate.
    """
    stated = [v for v in (body.get("max_tokens"), body.get("max_completion_tokens")) if v is not None]
    return max(stated) if stated else None


def choices(body: dict[str, Any]) -> int:
    """How many sequences the engine generates per prompt: `best_of` or `n`, each up to the output limit."""
    return max(body.get("n") or 1, body.get("best_of") or 1)


def prompts(body: dict[str, Any], endpoint: CompletionEndpoint) -> tuple[int, int]:
    """(prompts, token ids among them) as checked by `endpoint`: the engine runs each prompt of a list.

    Only the endpoint's own prompt field is read: a chat body's `prompt` is an unchecked extension.
    """
    prompt = body[endpoint.prompt_field]
    if endpoint.prompt_field != "prompt" or isinstance(prompt, str) or not prompt:
        return 1, 0
    if isinstance(prompt[0], str):
        return len(prompt), 0
    if isinstance(prompt[0], list):
        return len(prompt), sum(len(ids) for ids in prompt)
    return 1, len(prompt)


def token_charge(prompt: int, body: dict[str, Any], output_cap: int, endpoint: CompletionEndpoint) -> int:
    """Up-front token charge: the prompt (`prompt_estimate`) plus every sequence's output limit, for each
    prompt of a list. At least 1, as the body is never empty and every count is at least 1."""
    return prompt + (requested_tokens(body) or output_cap) * choices(body) * prompts(body, endpoint)[0]


def prompt_estimate(raw_size: int, body: dict[str, Any], endpoint: CompletionEndpoint) -> int:
    """The prompt part of the charge, and what is counted of the prompt when the engine never says: a
    quarter of the body's bytes, but never fewer than its token ids (one id may be written in two bytes)."""
    return max(raw_size // 4, prompts(body, endpoint)[1])
