"""Request bodies of the OpenAI-compatible routes (unknown fields ignored, ``null`` means absent, strict types)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

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
    n: int | None = Field(default=None, description="choices per prompt, generated in parallel (at most 8)")
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


class TextCompletionRequest(Sampling):
    prompt: Any = Field(default="", description="a string or an array of strings (one choice each; token ids "
                                                "are refused)")
    suffix: str = ""
    echo: bool = False
    logprobs: int | None = Field(default=None, description="how many top alternatives per token")


class EmbeddingRequest(WireModel):
    model: str = ""
    input: Any = Field(default=None, description="a string, strings, token ids or lists of token ids")
    dimensions: int | None = None
    encoding_format: str | None = Field(default=None, description='"float" (default) or "base64"')
    user: str | None = None


class ResponsesTextFormat(WireModel):
    type: str = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema", description="for json_schema")
    strict: bool | None = None


class ResponsesText(WireModel):
    format: ResponsesTextFormat | None = None
    verbosity: str | None = Field(default=None, description="accepted; a local model has one verbosity")


class ResponsesReasoning(WireModel):
    effort: str = ""
    summary: str | None = Field(default=None, description="accepted; the whole thinking is the summary")


class ResponsesRequest(WireModel):
    """POST /v1/responses (stateless). Fields not declared here land in ``model_extra`` and are refused."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)

    model: str = ""
    input: str | list[Any] = Field(default="", description="a string, or a list of input items")
    instructions: str | None = Field(default=None, description="becomes the first (system) message")
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = Field(default=None, description="false keeps only the first call")
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    reasoning: ResponsesReasoning | None = None
    text: ResponsesText | None = None
    truncation: str | None = Field(default=None, description='"auto" trims the prompt, "disabled" refuses')
    include: list[str] | None = None
    store: bool | None = Field(default=None, description="accepted; nothing is stored (the answer says store: false)")
    metadata: dict[str, Any] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    stream_options: dict[str, Any] | None = None
    num_ctx: int | None = Field(default=None, description="corral extra: the context window")
    options: dict[str, Any] | None = Field(default=None, description="corral extra: native options merged in")
