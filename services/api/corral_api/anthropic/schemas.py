"""Request bodies of the Anthropic Messages API (unknown fields ignored, ``null`` means absent, strict types)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from corral_common.schemas import WireModel


class MessageParam(WireModel):
    role: str = ""
    content: str | list[Any] = Field(default="", description="a string or an array of content blocks")


class CountTokensRequest(WireModel):
    """POST /v1/messages/count_tokens: what makes the prompt."""

    model: str = ""
    messages: list[MessageParam] = Field(default_factory=list)
    system: str | list[Any] | None = Field(default=None, description="a string or an array of text blocks")
    tools: list[dict[str, Any]] | None = Field(default=None, description='[{"name", "description"?, "input_schema"}]')
    tool_choice: dict[str, Any] | None = Field(default=None, description='{"type": "auto"|"any"|"tool"|"none"}')
    thinking: dict[str, Any] | None = Field(default=None, description='{"type": "enabled", "budget_tokens": N}')
    output_config: dict[str, Any] | None = Field(default=None, description='{"effort": "low"|"medium"|"high"|...}')


class MessagesRequest(CountTokensRequest):
    """POST /v1/messages."""

    max_tokens: int | None = Field(default=None, description="required, as on Anthropic's API")
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    metadata: dict[str, Any] | None = Field(default=None, description="accepted and ignored")
