"""Content digests (``sha256:<64 lowercase hex>``), parsed once at the edge."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import BinaryIO

from corral_common.errors import BadRequest

_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")


class InvalidDigest(ValueError):
    """A string that is not ``sha256:<64 hex>``."""


@dataclass(frozen=True)
class Digest:
    """A validated sha256 digest; ``hex`` is always 64 lowercase hex characters."""

    hex: str

    @classmethod
    def parse(cls, text: str) -> "Digest":
        """Accept ``sha256:<hex>`` or ``sha256-<hex>`` (exact match, no trailing newline)."""
        match = _DIGEST.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidDigest("invalid digest format")
        return cls(match.group(1).lower())

    @classmethod
    def of_bytes(cls, data: bytes) -> "Digest":
        """Digest of an in-memory byte string."""
        return cls(hashlib.sha256(data).hexdigest())

    @classmethod
    def of_file(cls, stream: BinaryIO, chunk: int = 1 << 20) -> "Digest":
        """Digest of a readable binary stream, read to its end."""
        h = hashlib.sha256()
        while block := stream.read(chunk):
            h.update(block)
        return cls(h.hexdigest())

    def __str__(self) -> str:
        return f"sha256:{self.hex}"

    def filename(self) -> str:
        """The blob file name in the store: ``sha256-<hex>``."""
        return f"sha256-{self.hex}"


def parse_digest(text: str) -> Digest:
    """A digest from client input (a URL path); 400 ``invalid digest format`` otherwise."""
    try:
        return Digest.parse(text)
    except InvalidDigest:
        raise BadRequest("invalid digest format") from None
