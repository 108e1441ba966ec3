"""Render prompts from messages: Ollama's Go templates, or the GGUF's Jinja template in a sandbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import TemplateError as JinjaError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from corral_common.errors import BadRequest
from corral_common.gotemplate import Template, TemplateError, json_values
from corral_common.internal import ResolvedModel

MAX_PROMPT_CHARS = 4 << 20
_SENTINEL = "\x00corral-response\x00"


def collate(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Join system texts, and merge consecutive messages of one role (not tool), as Ollama does."""
    system: list[str] = []
    collated: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] == "system":
            system.append(message["content"])
        if collated and collated[-1]["role"] == message["role"] and message["role"] != "tool":
            collated[-1] = {**collated[-1], "content": collated[-1]["content"] + "\n\n" + message["content"]}
        else:
            collated.append(dict(message))
    return "\n\n".join(system), collated


def _go_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as Go templates see it (exported struct field names)."""
    return {"Role": message["role"], "Content": message["content"], "Thinking": message.get("thinking", ""),
            "Images": message.get("images") or [], "ToolCalls": json_values(message.get("tool_calls") or []),
            "ToolName": message.get("tool_name", ""), "ToolCallID": message.get("tool_call_id", "")}


def _legacy(template: Template, messages: list[dict[str, Any]]) -> str:
    """The System/Prompt/Response form: one execution per turn; the last one cut at ``.Response``."""
    out: list[str] = []
    turn = {"System": "", "Prompt": "", "Response": ""}

    def execute() -> None:
        out.append(template.render(dict(turn)))
        turn.update(System="", Prompt="", Response="")

    for message in messages:
        role = message["role"]
        if role == "system":
            if turn["Prompt"] or turn["Response"]:
                execute()
            turn["System"] = message["content"]
        elif role == "user":
            if turn["Response"]:
                execute()
            turn["Prompt"] = message["content"]
        elif role == "assistant":
            turn["Response"] = message["content"]
    last = template.render({**turn, "Response": _SENTINEL})
    out.append(last.split(_SENTINEL, 1)[0])
    return "".join(out)


def render_go(text: str, messages: list[dict[str, Any]], tools: list[Any] | None = None,
              suffix: str = "", think: Any = None) -> str:
    """Execute an Ollama model template over the conversation."""
    try:
        template = Template.parse(text)
        system, collated = collate(messages)
        variables = {v.lower() for v in template.variables()}
        if suffix:
            prompt = collated[-1]["content"] if collated else ""
            return template.render({"Prompt": prompt, "Suffix": suffix, "Response": ""})
        if "messages" in variables:
            return template.render({"System": system, "Messages": [_go_message(m) for m in collated],
                                    "Tools": json_values(tools or []), "Response": "", "Think": bool(think),
                                    "ThinkLevel": think if isinstance(think, str) else "",
                                    "IsThinkSet": think is not None})
        return _legacy(template, collated)
    except TemplateError as exc:
        raise BadRequest(f"template error: {exc}") from None


def _raise(message: str) -> None:
    raise JinjaError(message)


def render_jinja(text: str, messages: list[dict[str, Any]], bos: str, eos: str,
                 tools: list[Any] | None = None) -> str:
    """The GGUF's chat template, rendered only in Jinja's immutable sandbox (CVE-2024-34359)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals.update(raise_exception=_raise, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    try:
        rendered = env.from_string(text).render(
            messages=[{k: v for k, v in m.items() if v is not None} for m in messages],
            add_generation_prompt=True, bos_token=bos, eos_token=eos, tools=tools or None)
    except Exception as exc:  # sandbox violations and template bugs alike must not reach the client as 500s
        raise BadRequest(f"chat template error: {exc}") from None
    if len(rendered) > MAX_PROMPT_CHARS:
        raise BadRequest("rendered prompt is too large")
    # The tokenizer adds BOS itself when the model wants one; a second one would change the output.
    return rendered[len(bos):] if bos and rendered.startswith(bos) else rendered


def render(model: ResolvedModel, messages: list[dict[str, Any]], template_override: str = "",
           tools: list[Any] | None = None, suffix: str = "", think: Any = None) -> str:
    """The prompt for a conversation: request TEMPLATE, else the model's, else its GGUF Jinja template."""
    go_template = template_override or model.template
    if go_template:
        return render_go(go_template, messages, tools, suffix, think)
    if model.chat_template:
        return render_jinja(model.chat_template, messages, model.bos_token, model.eos_token, tools)
    return render_go("{{ .Prompt }}", messages, tools, suffix)
