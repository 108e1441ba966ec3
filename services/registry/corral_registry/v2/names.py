"""Repository names and references of the /v2 protocol, validated once at the edge."""

from __future__ import annotations

from dataclasses import dataclass

from corral_common.digest import Digest, InvalidDigest
from corral_common.names import InvalidName, ModelName

from corral_registry.v2.errors import RegistryError


@dataclass(frozen=True)
class Repo:
    """``namespace/model``, with Ollama's rules for each part."""

    namespace: str
    model: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.model}"

    def name(self, layout_host: str, tag: str) -> ModelName:
        """The model name whose manifest path holds this repository's tag."""
        return ModelName.from_parts(layout_host, self.namespace, self.model, tag)


def parse_repo(namespace: str, model: str, layout_host: str) -> Repo:
    """400 NAME_INVALID unless both parts follow Ollama's naming rules."""
    try:
        ModelName.from_parts(layout_host, namespace, model, "latest")
    except InvalidName:
        raise RegistryError("NAME_INVALID", {"name": f"{namespace}/{model}"}) from None
    return Repo(namespace, model)


def parse_repo_text(text: str, layout_host: str) -> Repo | None:
    """``ns/model`` from a query parameter (``from=``), or None if it is not one."""
    namespace, _, model = text.partition("/")
    try:
        return parse_repo(namespace, model, layout_host)
    except RegistryError:
        return None


def parse_digest(text: str) -> Digest:
    """400 DIGEST_INVALID unless ``sha256:<64 hex>``."""
    try:
        return Digest.parse(text)
    except InvalidDigest:
        raise RegistryError("DIGEST_INVALID", {"digest": text}) from None


def parse_reference(text: str, layout_host: str) -> Digest | str:
    """A manifest reference: a digest (``sha256:...``) or a tag."""
    if ":" in text:
        return parse_digest(text)
    try:
        ModelName.from_parts(layout_host, "ns", "model", text)
    except InvalidName:
        raise RegistryError("TAG_INVALID", {"tag": text}) from None
    return text
