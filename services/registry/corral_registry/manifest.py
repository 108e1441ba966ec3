"""Manifests: parsed once, with every digest validated before any path is built from it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from corral_common.digest import Digest, InvalidDigest
from corral_common.jsonio import go_dumps

from corral_registry import media_types

MAX_MANIFEST_BYTES = 4 << 20
MAX_LAYERS = 4096


class InvalidManifest(ValueError):
    """A manifest that is not valid JSON of the expected shape."""


@dataclass(frozen=True)
class Layer:
    """One layer (or the config) of a manifest."""

    media_type: str
    digest: Digest
    size: int
    from_: str = ""
    name: str = ""

    def to_json(self) -> dict[str, Any]:
        """Go struct order: mediaType, digest, size, from?, name?."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.from_:
            out["from"] = self.from_
        if self.name:
            out["name"] = self.name
        return out


@dataclass(frozen=True)
class Manifest:
    """A schema-2 manifest with its config and layers."""

    config: Layer
    layers: tuple[Layer, ...] = field(default_factory=tuple)

    def to_bytes(self) -> bytes:
        """Serialised as Ollama's json.Encoder writes it (trailing newline)."""
        body = {"schemaVersion": 2, "mediaType": media_types.MANIFEST,
                "config": self.config.to_json(), "layers": [layer.to_json() for layer in self.layers]}
        return (go_dumps(body) + "\n").encode()

    def all_digests(self) -> set[Digest]:
        """Config and layer digests."""
        return {self.config.digest, *(layer.digest for layer in self.layers)}

    def total_size(self) -> int:
        """Sum of layer sizes plus the config size, as /api/tags reports."""
        return self.config.size + sum(layer.size for layer in self.layers)

    def layers_of(self, media_type: str) -> list[Layer]:
        """Layers with one media type, in order."""
        return [layer for layer in self.layers if layer.media_type == media_type]


def _layer(raw: Any) -> Layer:
    """Validate one layer object."""
    if not isinstance(raw, dict):
        raise InvalidManifest("layer is not an object")
    size = raw.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 2**62:
        raise InvalidManifest(f"invalid layer size {size!r}")
    try:
        digest = Digest.parse(raw.get("digest", ""))
    except InvalidDigest:
        raise InvalidManifest(f"invalid layer digest {raw.get('digest')!r}") from None
    media_type = raw.get("mediaType")
    if not isinstance(media_type, str):
        raise InvalidManifest("layer without mediaType")
    return Layer(media_type, digest, size, str(raw.get("from", "") or ""), str(raw.get("name", "") or ""))


def parse_manifest(data: bytes) -> Manifest:
    """Parse and validate manifest bytes; raise InvalidManifest on anything unexpected."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidManifest("manifest too large")
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidManifest(f"manifest is not JSON: {exc}") from None
    if not isinstance(raw, dict) or "config" not in raw:
        raise InvalidManifest("manifest has no config")
    layers = raw.get("layers") or []
    if not isinstance(layers, list) or len(layers) > MAX_LAYERS:
        raise InvalidManifest("manifest layers must be a list")
    return Manifest(_layer(raw["config"]), tuple(_layer(layer) for layer in layers))
