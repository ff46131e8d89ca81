"""The OpenAI request bodies the worker understands.

Unknown OpenAI parameters (temperature, top_p, stop, ...) are accepted and ignored,
as a real engine's sampling settings have no meaning for the mock.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class _GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1, description="The mock produces one choice per request.")

    @property
    def include_usage(self) -> bool:
        return self.stream and self.stream_options is not None and self.stream_options.include_usage


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    # A string, or a list of content parts ({"type": "text", "text": ...}, images, ...).
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(str(part.get("text", "")) for part in self.content)


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_GenerationRequest):
    # A string, a batch of strings, or pre-tokenised ids; the mock serves one prompt.
    prompt: str | list[str] | list[int]

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        return " ".join(str(item) for item in self.prompt)

    def requested_tokens(self) -> int | None:
        return self.max_tokens
