"""Who this corral is to the cloud: ``OLLAMA_API_KEY`` as a Bearer token, else a request signed with the
signin key (``$CORRAL_HOME/id_ed25519``, bound to an account by ``corral signin``), in Ollama's format:
``Authorization: <ssh public key blob>:<base64 ed25519 signature of "METHOD,/path?...&ts=..&nonce=..">``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral_common.identity import load_identity, signed_request


@dataclass
class Identity:
    """Credentials for the cloud; the key file is read again when it changes (a later ``corral signin``)."""

    api_key: str = ""
    key_path: Path | None = None
    _cached: tuple[float, Any] | None = field(default=None, repr=False)

    def _key(self) -> Any | None:
        """The private key, or None when there is no key file."""
        try:
            mtime = self.key_path.stat().st_mtime if self.key_path else None
        except OSError:
            mtime = None
        if mtime is None:
            return None
        if self._cached is None or self._cached[0] != mtime:
            self._cached = (mtime, load_identity(self.key_path))  # type: ignore[arg-type]
        return self._cached[1]

    def authorize(self, method: str, uri: str) -> tuple[str, dict[str, str]]:
        """The URI to request and the Authorization header for it (none when there is no identity)."""
        if self.api_key:
            return uri, {"authorization": f"Bearer {self.api_key}"}
        key = self._key()
        if key is None:
            return uri, {}
        signed, authorization = signed_request(key, method, uri)
        return signed, {"authorization": authorization}

    def describe(self) -> str:
        """What is sent, for messages: ``OLLAMA_API_KEY``, ``the signin key``, or ``no identity``."""
        if self.api_key:
            return "OLLAMA_API_KEY"
        return "the signin key" if self._key() is not None else "no identity"
