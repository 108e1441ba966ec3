"""Request bodies of the OpenAI-compatible routes (unknown fields ignored, ``null`` means absent, strict types)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from corral_common.schemas import WireModel


class FunctionCall(WireModel):
    name: str = ""
    arguments: str = Field(default="", description="the arguments as a JSON-encoded string")


class ToolCall(WireModel):
    id: str = ""
    type: str = "function"
    function: FunctionCall = Field(default_factory=FunctionCall)


class ChatMessage(WireModel):
    role: str = ""
    content: str | list[Any] | None = Field(default=None, description="a string or an array of content parts")
    name: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class StreamOptions(WireModel):
    include_usage: bool = False


class ResponseFormat(WireModel):
    type: str = "text"
    json_schema: dict[str, Any] | None = Field(default=None, description='{"name", "schema", "strict"?}')


class Reasoning(WireModel):
    effort: str = ""


class Sampling(WireModel):
    """Fields shared by chat and completions, plus corral's extras (``num_ctx``, ``options``)."""

    model: str = ""
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: Any = Field(default=None, description="a string or an array of strings")
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    n: int | None = None
    user: str | None = Field(default=None, description="accepted and ignored")
    num_ctx: int | None = Field(default=None, description="corral extra: the context window")
    options: dict[str, Any] | None = Field(default=None, description="corral extra: native options merged in")

    def include_usage(self) -> bool:
        """Whether the stream ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(Sampling):
    messages: list[ChatMessage] = Field(default_factory=list)
    max_completion_tokens: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    reasoning_effort: str | None = None
    reasoning: Reasoning | None = None


class CompletionRequest(Sampling):
    prompt: Any = Field(default="", description="a string (lists of prompts and token ids are refused)")
    suffix: str = ""
    echo: bool = False
    logprobs: int | None = Field(default=None, description="how many top alternatives per token")


class EmbeddingRequest(WireModel):
    model: str = ""
    input: Any = Field(default=None, description="a string, strings, token ids or lists of token ids")
    dimensions: int | None = None
    encoding_format: str | None = Field(default=None, description='"float" (default) or "base64"')
    user: str | None = None
