"""The state of a ``corral run`` session and the requests built from it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corral_cli.answer import AnswerStyle
from corral_cli.client import Client, ServerError
from corral_cli.errors import CliError
from corral_cli.formatting import go_duration
from corral_cli.progress import Progress, Spinner

THINK_LEVELS = ("high", "medium", "low", "max")

# Fetches a missing model (``corral pull``); run takes one so pulling can be plugged in later.
Puller = Callable[[Client, str, bool], None]


@dataclass
class RunOptions:
    """Everything one run or interactive session sends with its requests (Ollama's runOptions)."""

    model: str
    prompt: str = ""
    parent_model: str = ""
    loaded_messages: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    system: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    format: Any = ""  # "" (none), "json", or a JSON schema object
    keep_alive: str | int | None = None
    think: bool | str | None = None
    hide_thinking: bool = False
    word_wrap: bool = True
    verbose: bool = False
    multimodal: bool = False  # image paths in prompts are attached (the model has a vision projector)
    images: list[str] = field(default_factory=list)  # base64, for the one-shot prompt

    def apply_show(self, info: dict[str, Any]) -> None:
        """Take the parent model, stored MESSAGEs and whether it sees images from an /api/show answer."""
        self.parent_model = str((info.get("details") or {}).get("parent_model") or "")
        self.loaded_messages = list(info.get("messages") or [])
        self.multimodal = ("vision" in (info.get("capabilities") or []) or bool(info.get("projector_info"))
                           or any(".vision." in key for key in info.get("model_info") or {}))

    def answer_style(self) -> AnswerStyle:
        """How answers are printed to stdout for these options."""
        return AnswerStyle(word_wrap=self.word_wrap, hide_thinking=self.hide_thinking, plain=not sys.stdout.isatty())


def parse_keep_alive(text: str) -> str | int:
    """``--keepalive`` as Go parses it; sent as Go prints it (``5m0s``), or -1 for forever."""
    from corral_common.durations import InvalidDuration, parse_go_duration

    try:
        ns = parse_go_duration(text)
    except InvalidDuration as error:
        raise CliError(str(error)) from None
    return -1 if ns < 0 else go_duration(ns)


def parse_think(text: str) -> bool | str:
    """``--think[=VALUE]``: bare or true → True, false → False, or a level name."""
    if text in ("", "true"):
        return True
    if text == "false":
        return False
    if text in THINK_LEVELS:
        return text
    raise CliError(f'invalid value for --think: "{text}" (must be true, false, high, medium, low, or max)')


def parse_format(text: str) -> Any:
    """``--format``: ``json`` or a JSON schema object; empty means none."""
    if text in ("", "json"):
        return text
    try:
        return json.loads(text)
    except ValueError:
        raise CliError(f'invalid format: "{text}"; expected "json" or a valid JSON Schema object') from None


def infer_think(capabilities: list[str], current: bool | str | None, explicit: bool) -> bool | str | None:
    """The user's choice if made, else thinking on for models that can think, else unset."""
    if explicit:
        return current
    return True if "thinking" in capabilities else None


def _common(opts: RunOptions) -> dict[str, Any]:
    body: dict[str, Any] = {"model": opts.model}
    if opts.format:
        body["format"] = opts.format
    if opts.options:
        body["options"] = dict(opts.options)
    if opts.keep_alive is not None:
        body["keep_alive"] = opts.keep_alive
    if opts.think is not None:
        body["think"] = opts.think
    return body


def generate_body(opts: RunOptions) -> dict[str, Any]:
    """The /api/generate request of a one-shot run."""
    body = _common(opts)
    body["prompt"] = opts.prompt
    if opts.images:
        body["images"] = list(opts.images)
    if opts.system:
        body["system"] = opts.system
    return body


def chat_body(opts: RunOptions) -> dict[str, Any]:
    """The /api/chat request for the conversation so far."""
    body = _common(opts)
    body["messages"] = list(opts.messages)
    return body


def show(client: Client, model: str, **extra: Any) -> dict[str, Any]:
    """``POST /api/show`` for a model."""
    return client.request("POST", "/api/show", {"model": model, **extra}) or {}


def show_or_pull(client: Client, model: str, insecure: bool = False, pull: Puller | None = None) -> dict[str, Any]:
    """The model's /api/show answer, pulling it first when missing and a puller is given."""
    try:
        return show(client, model)
    except ServerError as error:
        if error.status != 404:
            raise
        if pull is None:
            raise CliError(f"model '{model}' not found") from None
    pull(client, model, insecure)
    return show(client, model)


def load_model(client: Client, opts: RunOptions) -> None:
    """Load (or with keep_alive 0, unload) the model: a generate request without a prompt."""
    body: dict[str, Any] = {"model": opts.model}
    if opts.keep_alive is not None:
        body["keep_alive"] = opts.keep_alive
    if opts.think is not None:
        body["think"] = opts.think  # fails now, not at the first prompt, if the model cannot think
    progress = Progress()
    progress.add(Spinner(""))
    try:
        for _ in client.stream("/api/generate", body):
            pass
    finally:
        progress.stop_and_clear()
