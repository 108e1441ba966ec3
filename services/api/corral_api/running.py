"""Generate and chat: resolve the model, check capabilities, render the prompt, stream from inference."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from corral_common.durations import InvalidDuration, parse_keep_alive
from corral_common.errors import AppError, BadRequest, NotFound
from corral_common.internal import (CompletionEvent, CompletionRequest, ForcedCall, LoadRequest, ResolvedModel,
                                    TokenizeRequest)
from corral_common.jsonio import utc_now
from corral_common.names import parse_name
from corral_common.options import validate_options
from corral_common.schemas import ChatRequest, GenerateRequest, with_metrics
from corral_common.schemabounds import check_format, checked_schema_text

from corral_api import prompt as prompts
from corral_api.images import place_markers
from corral_api.clients import InferenceClient, RegistryClient
from corral_api.harmony import HarmonyParser, is_harmony_model
from corral_api.shaping import OutputShaper, Shaper
from corral_api.thinking import ThinkingSplitter
from corral_api.toolcalls import ToolCallCollector, family_of, forced_call

THINK_LEVELS = ("high", "medium", "low", "max")
ChunkMaker = Callable[[str, str, list], dict[str, Any]]  # (content, thinking, tool calls) -> a response chunk


@dataclass
class Call:
    """What every model call carries: clients and the caller's request id."""

    registry: RegistryClient
    inference: InferenceClient
    request_id: str


def keep_alive_ns(value: Any) -> int | None:
    """Parse keep_alive, 400 with Go's message on a bad value."""
    try:
        return parse_keep_alive(value)
    except InvalidDuration as exc:
        raise BadRequest(str(exc)) from None


async def resolve(call: Call, model: str, missing: str) -> ResolvedModel:
    """The resolved model, 400 for an invalid name, 404 with ``missing`` when absent."""
    parse_name(model)
    try:
        return await call.registry.resolve(model, call.request_id)
    except NotFound:
        raise NotFound(missing) from None


def check_think(think: Any, model: ResolvedModel, shown: str) -> None:
    """Validate ``think``: a bool or a level, and only on models that can think."""
    if isinstance(think, str) and think not in THINK_LEVELS:
        raise BadRequest(f'invalid think value: "{think}" (must be "high", "medium", "low", "max", true, or false)')
    if think and not model.can("thinking"):
        raise BadRequest(f'"{shown}" does not support thinking')


def check_images(images: list[str] | None, model: ResolvedModel) -> None:
    """Images need a vision model (checked before any decoding)."""
    if images and not model.can("vision"):
        raise BadRequest(f"{model.short} does not support images: load a model with vision capability")


def merged_options(model: ResolvedModel, options: dict[str, Any] | None) -> dict[str, Any]:
    """The Modelfile PARAMETERs overridden by the request's validated options."""
    return {**model.params, **validate_options(options)}


async def _lifecycle(call: Call, model: ResolvedModel, options: dict, keep_alive: int | None) -> str:
    """Empty prompt: unload for keep_alive 0, else load. Returns the done_reason."""
    if keep_alive == 0:
        await call.inference.unload(model.engine_model(), call.request_id)
        return "unload"
    load = LoadRequest(model=model.engine_model(), options=options, keep_alive_ns=keep_alive)
    await call.inference.load(load, call.request_id)
    return "load"


def _completion(req: GenerateRequest | ChatRequest, model: ResolvedModel, options: dict[str, Any],
                keep_alive: int | None, prompt: str, images: list[str], fmt: Any,
                context: list[int] | None = None) -> CompletionRequest:
    """The inference request for a rendered prompt, with the request's logprobs and truncation settings."""
    return CompletionRequest(model=model.engine_model(), options=options, keep_alive_ns=keep_alive, prompt=prompt,
                             context=context or [], format=fmt, logprobs=req.logprobs,
                             top_logprobs=req.top_logprobs, truncate=req.truncate is not False, images=images)


def _with_logprobs(chunk: dict[str, Any], event: CompletionEvent) -> dict[str, Any]:
    """Attach the engine's per-token logprobs to a response chunk."""
    if event.logprobs:
        chunk["logprobs"] = event.logprobs
    return chunk


def _modelfile_messages(model: ResolvedModel) -> list[dict[str, Any]]:
    """The Modelfile MESSAGEs as conversation messages."""
    return [{"role": m["role"], "content": m["content"]} for m in model.messages]


def _generate_messages(req: GenerateRequest, model: ResolvedModel) -> list[dict[str, Any]]:
    """Ollama's generate: system (request or Modelfile), Modelfile MESSAGEs unless context, the prompt."""
    messages: list[dict[str, Any]] = []
    system = req.system or model.system
    if system:
        messages.append({"role": "system", "content": system})
    if req.context is None:
        messages += _modelfile_messages(model)
    messages.append({"role": "user", "content": req.prompt, "images": req.images})
    return messages


async def _runnable(call: Call, req: GenerateRequest | ChatRequest, action: str,
                    no_model: AppError) -> ResolvedModel:
    """The checks generate and chat share, in Ollama's order: top_logprobs, a model named, stored, can complete;
    then the bounds of its format."""
    if not 0 <= req.top_logprobs <= 20:
        raise BadRequest("top_logprobs must be between 0 and 20")
    if not req.model:
        raise no_model
    model = await resolve(call, req.model, f"model '{req.model}' not found")
    if not model.can("completion"):
        raise BadRequest(f'"{req.model}" does not support {action}')
    check_format(req.format)  # before anything reaches inference: a grammar's size is bounded here too
    return model


def _done(chunk: ChunkMaker, reason: str | None) -> dict[str, Any]:
    """The last chunk of a stream: an empty one marked done, with the reason."""
    return {**chunk("", "", []), "done": True, "done_reason": reason}


async def _streamed(call: Call, body: CompletionRequest, shaper: Shaper, chunk: ChunkMaker,
                    final: Callable[[CompletionEvent], dict[str, Any]], cached: bool) -> AsyncIterator[dict[str, Any]]:
    """Inference events as response chunks: shaped text as it comes, what the shaper held back, the final chunk
    (with ``cached``, it also says how many prompt tokens came from the cache)."""
    async with aclosing(call.inference.complete(body, call.request_id)) as events:
        async for event in events:
            if not event.done:
                thought, content = shaper.feed(event.content)
                if thought or content or event.logprobs:
                    yield _with_logprobs(chunk(content, thought, []), event)
                continue
            thought, content, calls = shaper.finish()
            if thought or content or calls:
                yield chunk(content, thought, calls)
            done = with_metrics(final(event), event.metrics())
            yield {**done, "cached_tokens": event.cached_tokens} if cached else done


async def generate(call: Call, req: GenerateRequest, cached: bool = False) -> AsyncIterator[dict[str, Any]]:
    """POST /api/generate as a stream of response chunks; ``cached`` adds ``cached_tokens`` to the final chunk
    (for the compat layers' usage; never on /api)."""
    if req.raw and (req.template or req.system or req.context):
        raise BadRequest("raw mode does not support template, system, or context")
    model = await _runnable(call, req, "generate", NotFound("model '' not found"))
    if req.suffix and not model.can("insert"):
        raise BadRequest(f"{model.name} does not support insert")
    check_think(req.think, model, req.model)
    check_images(req.images, model)
    keep_alive = keep_alive_ns(req.keep_alive)
    options = merged_options(model, req.options)
    chunk = _generate_chunk(req.model)
    if not req.prompt and not req.images:
        yield _done(chunk, await _lifecycle(call, model, options, keep_alive))
        return
    think = req.think if req.think is not None else (model.can("thinking") or None)
    messages, images = place_markers(_generate_messages(req, model))
    text = req.prompt if req.raw else prompts.render(model, messages, req.template, suffix=req.suffix, think=think)
    body = _completion(req, model, options, keep_alive, text, images, req.format, req.context)

    def final(event: CompletionEvent) -> dict[str, Any]:
        done = _done(chunk, event.done_reason)
        return {**done, "context": event.context} if not req.raw and event.context is not None else done

    async for out in _streamed(call, body, _shaper(req.think, model, None, text), chunk, final, cached):
        yield out


def _generate_chunk(model: str) -> ChunkMaker:
    """How a generate chunk is made: the text in ``response``, thinking beside it."""

    def chunk(response: str, thinking: str, _calls: list) -> dict[str, Any]:
        out: dict[str, Any] = {"model": model, "created_at": utc_now(), "response": response}
        if thinking:
            out["thinking"] = thinking
        out["done"] = False
        return out

    return chunk


def _chat_messages(req: ChatRequest, model: ResolvedModel) -> list[dict[str, Any]]:
    """Modelfile MESSAGEs, then request messages; the Modelfile SYSTEM first unless the request has one."""
    messages = _modelfile_messages(model)
    messages += [m.model_dump(exclude_none=True) for m in req.messages]
    if model.system and not (req.messages and req.messages[0].role == "system"):
        messages.insert(0, {"role": "system", "content": model.system})
    return messages


@dataclass
class ToolSetup:
    """A chat's tools: those for the prompt, the call ``tool_choice`` forces (if any) and the output collector."""

    tools: list | None = None
    forced: ForcedCall | None = None
    collector: ToolCallCollector | None = None


def _tool_setup(req: ChatRequest, model: ResolvedModel) -> ToolSetup:
    """Tools for the prompt, the call that tool_choice forces, and the output collector."""
    tools = None if req.tool_choice == "none" else (req.tools or None)
    if not tools:
        return ToolSetup()
    try:
        forced = forced_call(tools, req.tool_choice)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if forced is None and req.tool_choice not in (None, "auto"):
        raise BadRequest(f'invalid tool_choice {req.tool_choice!r}: use "none", "auto", "required" or a function')
    if forced is None and not model.can("tools"):
        raise BadRequest(f"{model.name} does not support tools")
    if forced is not None and req.format not in (None, ""):
        raise BadRequest("format cannot be combined with a forced tool_choice")
    if forced is not None:
        return ToolSetup(tools, forced, ToolCallCollector.for_forced(forced))
    return ToolSetup(tools, None, ToolCallCollector(family_of(model.template or model.chat_template or "")))


def _shaper(req_think: Any, model: ResolvedModel, collector: ToolCallCollector | None,
            prompt: str) -> Shaper:
    """Thinking is split for models that can think (inside already if the prompt opened the tag), never in a
    forced call; it is kept unless ``think`` is false. gpt-oss (harmony) output has a parser of its own."""
    forced = bool(collector and collector.forced)
    if not forced and is_harmony_model(model):
        return HarmonyParser(prompt, keep_thinking=req_think is not False)
    thinks = model.can("thinking") and not forced
    splitter = ThinkingSplitter(inside=prompt.rstrip().endswith("<think>")) if thinks else None
    return OutputShaper(splitter, keep_thinking=thinks and req_think is not False, tools=collector)


def _message(content: str, thinking: str = "", tool_calls: list | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _chat_prompt(req: ChatRequest, model: ResolvedModel, tools: list | None,
                 forced: ForcedCall | None = None) -> tuple[str, list[str]]:
    """The rendered chat prompt and its images (thinking on by default for models that can think); a forced call
    opens no think block and the prompt ends with the call's constant start."""
    think = req.think if req.think is not None else (model.can("thinking") or None)
    messages, images = place_markers(_chat_messages(req, model))
    if forced is None:
        return prompts.render(model, messages, tools=tools, think=think), images
    return prompts.render(model, messages, tools=tools, think=False) + forced.prefix(), images


async def chat(call: Call, req: ChatRequest, relax_think: bool = False,
               cached: bool = False) -> AsyncIterator[dict[str, Any]]:
    """POST /api/chat as a stream of response chunks; ``relax_think`` drops ``think`` for models that cannot
    think instead of refusing (Ollama's Anthropic layer); ``cached`` adds ``cached_tokens`` to the final chunk."""
    model = await _runnable(call, req, "chat", BadRequest("model is required"))
    if relax_think and not model.can("thinking"):
        req = req.model_copy(update={"think": None})
    setup = _tool_setup(req, model)
    if setup.forced is not None:
        checked_schema_text(setup.forced.model_dump(), "tool parameters")
    check_think(req.think, model, req.model)
    check_images([i for m in req.messages for i in (m.images or [])], model)
    keep_alive = keep_alive_ns(req.keep_alive)
    options = merged_options(model, req.options)
    chunk = _chat_chunk(req.model)
    if not req.messages:
        yield _done(chunk, await _lifecycle(call, model, options, keep_alive))
        return
    text, images = _chat_prompt(req, model, setup.tools, setup.forced)
    body = _completion(req, model, options, keep_alive, text, images, None if setup.forced else req.format)
    body.forced_call = setup.forced
    shaper = _shaper(req.think, model, setup.collector, text)
    async for out in _streamed(call, body, shaper, chunk, lambda event: _done(chunk, event.done_reason), cached):
        yield out


async def chat_tokens(call: Call, req: ChatRequest) -> int:
    """How many tokens a chat request's prompt renders to (the whole prompt, as if nothing were cached)."""
    model = await _runnable(call, req, "chat", BadRequest("model is required"))
    if not model.can("thinking"):
        req = req.model_copy(update={"think": None})
    tools = None if req.tool_choice == "none" else (req.tools or None)  # counted even where chat would refuse them
    text, _ = _chat_prompt(req, model, tools)
    body = TokenizeRequest(model=model.engine_model(), options=merged_options(model, req.options),
                           keep_alive_ns=keep_alive_ns(req.keep_alive), text=text)
    return len((await call.inference.tokenize(body, call.request_id)).tokens)


def _chat_chunk(model: str) -> ChunkMaker:
    """How a chat chunk is made: an assistant message with content, thinking and tool calls."""

    def chunk(content: str, thinking: str, calls: list) -> dict[str, Any]:
        return {"model": model, "created_at": utc_now(), "message": _message(content, thinking, calls),
                "done": False}

    return chunk


async def collect_generate(chunks: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """stream:false for generate: one object with the text concatenated."""
    parts, thoughts, logprobs, final = [], [], [], {}
    async for chunk in chunks:
        parts.append(chunk.get("response", ""))
        thoughts.append(chunk.get("thinking", ""))
        logprobs += chunk.get("logprobs", [])
        final = chunk
    out = {**final, "response": "".join(parts)}
    if "".join(thoughts):
        out = {"model": out["model"], "created_at": out["created_at"], "response": out["response"],
               "thinking": "".join(thoughts), **{k: v for k, v in out.items()
                                                 if k not in ("model", "created_at", "response")}}
    return {**out, **({"logprobs": logprobs} if logprobs else {})}


async def collect_chat(chunks: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """stream:false for chat: one object with the message content concatenated."""
    parts, thoughts, calls, logprobs, final = [], [], [], [], {}
    async for chunk in chunks:
        parts.append(chunk["message"]["content"])
        thoughts.append(chunk["message"].get("thinking", ""))
        calls += chunk["message"].get("tool_calls", [])
        logprobs += chunk.get("logprobs", [])
        final = chunk
    message = _message("".join(parts), "".join(thoughts), calls)
    return {**final, "message": message, **({"logprobs": logprobs} if logprobs else {})}
