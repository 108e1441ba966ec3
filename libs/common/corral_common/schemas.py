"""Wire schemas of Ollama's native API (requests parsed strictly; responses built in Ollama's key order)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from corral_common.errors import BadRequest


class WireModel(BaseModel):
    """Base for request bodies: unknown fields ignored, ``null`` means absent, types strict like Go."""

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class Message(WireModel):
    role: str = ""
    content: str = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None

    @field_validator("role")
    @classmethod
    def _lower_role(cls, value: str) -> str:
        return value.lower()


class RunRequest(WireModel):
    """What generate and chat both take: sampling options, thinking, truncation and logprobs."""

    options: dict[str, Any] | None = None
    think: bool | str | None = None
    truncate: bool | None = None
    shift: bool | None = None
    logprobs: bool = False
    top_logprobs: int = 0


class GenerateRequest(RunRequest):
    model: str = ""
    prompt: str = ""
    suffix: str = ""
    system: str = ""
    template: str = ""
    context: list[int] | None = None
    stream: bool = True
    raw: bool = False
    format: Any = Field(default=None, description='"json", a JSON schema object, or empty')
    keep_alive: Any = Field(default=None, description="seconds (number) or a Go duration string")
    images: list[str] | None = None


class ChatRequest(RunRequest):
    model: str = ""
    messages: list[Message] = Field(default_factory=list)
    stream: bool = True
    format: Any = None
    keep_alive: Any = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = Field(default=None, description='corral extension: "none", "auto", "required" or '
                                                       '{"type": "function", "function": {"name": ...}}')


class EmbedRequest(WireModel):
    model: str = ""
    input: Any = None
    keep_alive: Any = None
    truncate: bool = True
    dimensions: int | None = None
    options: dict[str, Any] | None = None


class EmbeddingsRequest(WireModel):
    model: str = ""
    prompt: str = ""
    keep_alive: Any = None
    options: dict[str, Any] | None = None


class NamedRequest(WireModel):
    """Requests that take ``model`` (or the deprecated ``name``)."""

    model: str = ""
    name: str = ""

    def model_name(self) -> str:
        """``model``, falling back to the deprecated ``name``."""
        return self.model or self.name


class ShowRequest(NamedRequest):
    verbose: bool = False
    system: str = ""
    options: dict[str, Any] | None = None


class DeleteRequest(NamedRequest):
    pass


class CopyRequest(WireModel):
    source: str = ""
    destination: str = ""


class CreateRequest(NamedRequest):
    stream: bool = True
    quantize: str = ""
    quantization: str = ""
    from_: str = Field(default="", alias="from")
    remote_host: str = Field(default="", description="with from: a remote model, run by the Ollama API at this URL")
    info: dict[str, Any] | None = Field(default=None, description="config overrides (capabilities, model_family, "
                                                                  "context_length, ...), as Ollama's create takes")
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    license: str | list[str] | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[Message] | None = None

    def quantize_level(self) -> str:
        """``quantize``, falling back to the deprecated ``quantization``."""
        return (self.quantize or self.quantization).upper()


def _describe(error: dict[str, Any], schema: type[BaseModel]) -> str:
    """One readable sentence for a pydantic error."""
    field = ".".join(str(p) for p in error["loc"]) or "body"
    return f"invalid value for field '{field}' in {schema.__name__}: {error['msg']}"


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # \ud800-\udfff: a pair decodes to one character


def _lone_surrogate(data: Any) -> str | None:
    """The first unpaired UTF-16 surrogate in a decoded body, written as its JSON escape (None if none)."""
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        return f"\\u{ord(exc.object[exc.start]):04x}"
    return None


def _no_constant(name: str) -> Any:
    """Python's json accepts NaN and Infinity; JSON (and Go) do not."""
    raise BadRequest(f"invalid JSON in request body: {name} is not a JSON value")


def _finite(text: str) -> float:
    """A JSON number as a float; one too large for a float64 (1e999) is a 400, as in Go, not infinity."""
    value = float(text)
    if math.isinf(value):
        raise BadRequest(f"invalid JSON in request body: number {text[:40]} is out of range")
    return value


# Deeper bodies are refused: Python's json decodes up to ~1000 levels, but the code that walks a body afterwards
# (validation, templates, re-encoding) recurses too and would fail part-way; no API needs more than a few dozen.
MAX_DEPTH = 100
TOO_DEEP = f"invalid JSON in request body: nested too deeply (more than {MAX_DEPTH} levels)"


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def decode_json(raw: bytes) -> Any:
    """A JSON body decoded; invalid JSON, nesting too deep, a number out of range or a lone surrogate is a 400
    saying which."""
    try:
        data = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except ValueError as exc:  # also UnicodeDecodeError, and an integer of more than 4300 digits
        raise BadRequest(f"invalid JSON in request body: {exc}") from None
    except RecursionError:
        raise BadRequest(TOO_DEEP) from None
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(data, MAX_DEPTH):
        raise BadRequest(TOO_DEEP)
    if _SURROGATE_ESCAPE.search(raw) and (lone := _lone_surrogate(data)) is not None:
        raise BadRequest(f"invalid JSON in request body: lone surrogate {lone} in a string (not valid Unicode)")
    return data


def parse_body(schema: type[WireModel], raw: bytes) -> Any:
    """Decode a request body into a schema; every problem is a 400 with a message that says what."""
    if not raw.strip():
        raise BadRequest("missing request body")
    data = decode_json(raw)
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(_describe(exc.errors()[0], schema)) from None


def model_details(config: dict[str, Any], parent_model: str = "") -> dict[str, Any]:
    """``api.ModelDetails`` from a config blob (all keys present except the optional lengths)."""
    details: dict[str, Any] = {
        "parent_model": parent_model,
        "format": config.get("model_format", ""),
        "family": config.get("model_family", ""),
        "families": config.get("model_families"),
        "parameter_size": config.get("model_type", ""),
        "quantization_level": config.get("file_type", ""),
    }
    for key in ("context_length", "embedding_length"):
        if config.get(key):
            details[key] = config[key]
    return details


_METRICS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
            "eval_count", "eval_duration", "truncated_tokens")


def with_metrics(chunk: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """Append the non-zero metrics in Ollama's order (they are omitempty)."""
    for key in _METRICS:
        if metrics.get(key):
            chunk[key] = metrics[key]
    return chunk
