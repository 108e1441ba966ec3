"""Model names in Ollama's grammar: ``[scheme://][host/][namespace/]model[:tag]``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from corral_common.errors import BadRequest

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
_MISSING = "!MISSING!"

# First char [A-Za-z0-9_]; the rest also allows '-', plus '.' (not in a namespace) and ':' (host only).
_PART_RULES = {
    "host": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*"), 350),
    "namespace": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*"), 80),
    "model": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"), 80),
    "tag": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"), 80),
}


class InvalidName(ValueError):
    """A model name that does not follow Ollama's naming rules."""


def _cut_last(text: str, sep: str) -> tuple[str, str, bool]:
    """Split at the last ``sep``; empty sides become the missing marker (as Go's cutPromised)."""
    i = text.rfind(sep)
    if i < 0:
        return text, "", False
    return text[:i] or _MISSING, text[i + len(sep):] or _MISSING, True


def _parse_bare(text: str) -> dict[str, str]:
    """Split a name into its parts without applying defaults."""
    parts: dict[str, str] = {}
    if text.rfind(":") > text.rfind("/"):
        text, parts["tag"], _ = _cut_last(text, ":")
    text, model, promised = _cut_last(text, "/")
    if not promised:
        parts["model"] = text
        return parts
    parts["model"] = model
    text, namespace, promised = _cut_last(text, "/")
    if not promised:
        parts["namespace"] = text
        return parts
    parts["namespace"] = namespace
    parts["host"] = text.split("://", 1)[1] if "://" in text else text
    return parts


def _valid_part(kind: str, value: str) -> bool:
    """Whether one part of a name is valid for its kind."""
    pattern, max_len = _PART_RULES[kind]
    return 0 < len(value) <= max_len and pattern.fullmatch(value) is not None


@dataclass(frozen=True)
class ModelName:
    """A fully-qualified, validated model name."""

    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> "ModelName":
        """Parse and validate a name, filling Ollama's defaults; raise InvalidName."""
        if not isinstance(text, str) or not text or text != text.strip():
            raise InvalidName(text)
        bare = _parse_bare(text)
        name = cls(
            host=bare.get("host", DEFAULT_HOST),
            namespace=bare.get("namespace", DEFAULT_NAMESPACE),
            model=bare.get("model", ""),
            tag=bare.get("tag", DEFAULT_TAG),
        )
        for kind in ("host", "namespace", "model", "tag"):
            if not _valid_part(kind, getattr(name, kind)):
                raise InvalidName(text)
        return name

    @classmethod
    def from_parts(cls, host: str, namespace: str, model: str, tag: str) -> "ModelName":
        """Build a name from stored path parts, validating each."""
        return cls.parse(f"{host}/{namespace}/{model}:{tag}")

    def parts(self) -> tuple[str, str, str, str]:
        """The four path components of the manifest file."""
        return (self.host, self.namespace, self.model, self.tag)

    def display_shortest(self) -> str:
        """Ollama's DisplayShortest: drop default host and the library namespace."""
        if self.host.lower() == DEFAULT_HOST:
            if self.namespace.lower() == DEFAULT_NAMESPACE:
                return f"{self.model}:{self.tag}"
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def repository(self) -> str:
        """``namespace/model``, the registry repository path."""
        return f"{self.namespace}/{self.model}"

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def key(self) -> tuple[str, str, str, str]:
        """Case-insensitive identity, since names match regardless of case."""
        return tuple(p.lower() for p in self.parts())  # type: ignore[return-value]


def parse_name(text: str, message: str = "invalid model name") -> ModelName:
    """The validated name, or a 400 with ``message`` (each caller keeps its own wording)."""
    try:
        return ModelName.parse(text)
    except InvalidName:
        raise BadRequest(message) from None
