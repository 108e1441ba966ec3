"""Schemas of the internal HTTP calls between the gateway and the inference service."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from corral_common.digest import Digest


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


class CompletionRequest(LoadRequest):
    prompt: str = ""
    context: list[int] = Field(default_factory=list)
    format: Any = Field(default=None, description='"json", a JSON schema object, or empty')
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)
    truncate: bool = Field(default=True, description="false: a prompt longer than the context is a 400")
    images: list[str] = Field(default_factory=list, description="base64 images, in the order of the prompt's "
                                                                "[img-N] markers")


class EmbedRequest(LoadRequest):
    inputs: list[str] = Field(default_factory=list)
    truncate: bool = True
    embedding: bool = True


class UnloadRequest(InternalModel):
    model_digest: str
