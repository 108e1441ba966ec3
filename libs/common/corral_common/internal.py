"""The shapes that cross a service boundary: one model each, used by sender and receiver alike.

Gateway -> registry: ``ResolvedModel`` (``/store/resolve``), ``TransferRequest`` (pull/push, also the
Celery job's arguments), ``ProgressEvent`` (create/pull/push streams).
Gateway -> inference: ``LoadRequest``, ``CompletionRequest`` -> ``CompletionEvent`` stream,
``EmbedInputs`` -> ``EmbedOutput``, ``TokenizeRequest`` -> ``TokenizeOutput``, ``UnloadRequest``.
A field added to a path is added here once.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from corral_common.digest import Digest
from corral_common.schemas import NamedRequest


class InternalModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineModel(InternalModel):
    """Which blob to run (by digest only: the inference service builds the path itself)."""

    name: str
    model_digest: str = Field(description="64-hex sha256 of the GGUF model blob")
    manifest_digest: str = ""
    adapters: list[str] = Field(default_factory=list)
    projectors: list[str] = Field(default_factory=list, description="64-hex digests of vision projector blobs")
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("model_digest")
    @classmethod
    def _hex(cls, value: str) -> str:
        return Digest.parse(f"sha256:{value}").hex

    @field_validator("adapters", "projectors")
    @classmethod
    def _hexes(cls, values: list[str]) -> list[str]:
        return [Digest.parse(f"sha256:{v}").hex for v in values]


class LoadRequest(InternalModel):
    model: EngineModel
    options: dict[str, Any] = Field(default_factory=dict, description="validated, merged options")
    keep_alive_ns: int | None = None
    embedding: bool = False


class ToolFunction(InternalModel):
    """A function a forced call may name: its name and its parameters' JSON schema."""

    name: str
    parameters: dict[str, Any] = Field(default_factory=dict, description="JSON schema; empty: any object")


class ForcedCall(InternalModel):
    """The output is one call to one of ``functions``, as compact JSON (``tool_choice`` required or named).

    The gateway ends the prompt with ``prefix()`` so the model spends no tokens on the call's constant start;
    the inference service's grammar covers the rest."""

    functions: list[ToolFunction] = Field(min_length=1)

    def prefix(self) -> str:
        """The call's constant start: through ``"arguments":`` when one function is forced, else ``{"name":``."""
        if len(self.functions) == 1:
            return '{"name":' + json.dumps(self.functions[0].name) + ',"arguments":'
        return '{"name":'


class CompletionRequest(LoadRequest):
    prompt: str = ""
    context: list[int] = Field(default_factory=list)
    format: Any = Field(default=None, description='"json", a JSON schema object, or empty')
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)
    truncate: bool = Field(default=True, description="false: a prompt longer than the context is a 400")
    images: list[str] = Field(default_factory=list, description="base64 images, in the order of the prompt's "
                                                                "[img-N] markers")
    forced_call: ForcedCall | None = Field(default=None, description="the prompt ends with its prefix(); the output "
                                                                      "is the rest of the call (format is empty)")


class EmbedInputs(LoadRequest):
    """Texts to embed with one model (the gateway has applied Ollama's input rules already)."""

    inputs: list[str] = Field(default_factory=list)
    truncate: bool = True
    embedding: bool = True


class EmbedOutput(InternalModel):
    """Raw (unnormalised) vectors, one per input, with Ollama's metrics."""

    embeddings: list[list[float]] = Field(default_factory=list)
    prompt_eval_count: int = 0
    load_duration: int = 0
    total_duration: int = 0


class TokenizeRequest(LoadRequest):
    """A rendered prompt to turn into the model's tokens (the model is loaded as for a completion)."""

    text: str = ""


class TokenizeOutput(InternalModel):
    """The prompt's token ids, as the model would evaluate them (with BOS, special tokens parsed)."""

    tokens: list[int] = Field(default_factory=list)


class LoadResult(InternalModel):
    """What a load without generating took."""

    load_duration: int = 0
    total_duration: int = 0


class CompletionEvent(InternalModel):
    """One event of a completion stream: a text piece, or (``done``) the final one with the metrics.

    Durations are in nanoseconds. On the wire the defaults are left out (``wire()``), so a piece is
    ``{"content": "..."}`` and errors travel as the stream's own error line, never as an event.
    """

    content: str = ""
    logprobs: list[dict[str, Any]] | None = Field(default=None, description="per-token logprobs when asked for")
    done: bool = False
    done_reason: str = Field(default="", description='"stop", "length", "cancel" (client left), "load", "unload"')
    context: list[int] | None = Field(default=None, description="prompt + generated tokens ([]: image prompt)")
    prompt_eval_count: int = Field(default=0, description="prompt tokens evaluated (not taken from the cache)")
    cached_tokens: int = Field(default=0, description="prompt tokens reused from the cache: the whole prompt is "
                                                   "prompt_eval_count + cached_tokens (not an Ollama metric)")
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    truncated_tokens: int = Field(default=0, description="prompt tokens dropped to fit the context")
    load_duration: int = 0
    total_duration: int = 0

    def wire(self) -> dict[str, Any]:
        """The event as the inference service sends it: only the fields that are set, but a piece always has
        ``content`` (a logprobs piece may carry "") and a final event keeps ``context`` when it is ``[]``."""
        if not self.done and self.logprobs is None:
            return {"content": self.content}  # a plain piece, by far the most common event
        data = self.model_dump(exclude_defaults=True)
        return data if self.done else {"content": self.content, **data}

    def metrics(self) -> dict[str, Any]:
        """Ollama's metric fields of a final event."""
        return self.model_dump(include=METRIC_FIELDS)


METRIC_FIELDS = {"total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                 "eval_count", "eval_duration", "truncated_tokens"}


class ResolvedModel(InternalModel):
    """Everything needed to run a stored model: the registry's answer to ``/store/resolve``."""

    name: str = Field(description="the full name, host/namespace/model:tag")
    short: str = Field(description="the name as Ollama shows it (registry.ollama.ai/library/ left out)")
    manifest_digest: str
    model_digest: str = Field(description='64-hex sha256 of the model layer ("" for a remote model)')
    adapters: list[str] = Field(default_factory=list)
    projectors: list[str] = Field(default_factory=list)
    template: str | None = Field(default=None, description="the Go template layer, if the model has one")
    chat_template: str | None = Field(default=None, description="the GGUF's Jinja chat template")
    system: str = ""
    params: dict[str, Any] = Field(default_factory=dict, description="the Modelfile PARAMETERs")
    messages: list[dict[str, Any]] = Field(default_factory=list, description="the Modelfile MESSAGEs")
    details: dict[str, Any] = Field(default_factory=dict)
    capabilities: list[str] = Field(default_factory=list)
    bos_token: str = ""
    eos_token: str = ""
    context_length: int | None = None
    modified_at: str = ""
    remote_host: str = Field(default="", description="a remote model: the base URL of the API that runs it")
    remote_model: str = Field(default="", description="a remote model: its name there")

    def can(self, capability: str) -> bool:
        """Whether the model has a capability ("completion", "tools", "thinking", "vision", ...)."""
        return capability in self.capabilities

    def engine_model(self) -> EngineModel:
        """The inference service's view: which blobs to run."""
        return EngineModel(name=self.short, model_digest=self.model_digest, manifest_digest=self.manifest_digest,
                           adapters=self.adapters, projectors=self.projectors, details=self.details)


class ProgressEvent(InternalModel):
    """One line of a create, pull or push stream (Ollama's ``api.ProgressResponse``, omitempty)."""

    status: str
    digest: str = ""
    total: int = 0
    completed: int = 0

    def wire(self) -> dict[str, Any]:
        """As Ollama sends it: empty fields left out."""
        return self.model_dump(exclude_defaults=True)


class TransferRequest(NamedRequest):
    """Ollama's ``api.PullRequest`` / ``api.PushRequest``: the gateway's body, the registry's, the job's arguments.

    ``username``/``password`` are accepted and ignored, as in Ollama.
    """

    insecure: bool = False
    stream: bool = True
    username: str = ""
    password: str = ""


class UnloadRequest(InternalModel):
    model_digest: str
    adapters: list[str] | None = Field(default=None, description="64-hex digests of the model's adapters: only the "
                                                                 "runner with exactly these (None: every runner of "
                                                                 "the blob)")


class NodeLoad(InternalModel):
    """One inference node's occupancy: what a gateway routing between several nodes chooses by."""

    models: list[str] = Field(default_factory=list, description="64-hex digests of the model blobs loaded")
    active: int = Field(0, description="requests holding or waiting for a loaded model")
    loaded: int = 0
    max_loaded: int = 0
    available_memory: int = Field(0, description="bytes the node could still load a model into")
    idle_memory: int = Field(0, description="bytes held by idle models it would evict for another")
