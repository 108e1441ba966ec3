"""Ollama's request signatures: ``Authorization: <ssh public key blob>:<base64 ed25519 signature>``.

API calls sign ``<METHOD>,<request URI with ?ts=>`` (ollama-api.md §6); registry token requests sign
``GET,<token URL>,<base64(hex(sha256(body)))>``. The verifier checks the signature, the timestamp
window and that the (key, nonce or message) pair was never seen before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from corral_auth.replay import ReplayCache

_B64 = r"[A-Za-z0-9+/]+={0,2}"
_HEADER = re.compile(rf"({_B64}):({_B64})")
EMPTY_BODY_HASH = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()


class SignatureError(Exception):
    """Why a signed request was refused (never shown to the client verbatim)."""


@dataclass(frozen=True)
class SignedRequest:
    """A verified request: who signed it (the public key blob) and what they signed."""

    public_key: str
    message: str


def looks_signed(authorization: str) -> bool:
    """Whether an Authorization value has Ollama's ``<key>:<signature>`` shape (no scheme word)."""
    return _HEADER.fullmatch(authorization.strip()) is not None


def public_key_of(blob: str) -> Ed25519PublicKey:
    """The ed25519 key inside an SSH wire-format blob (the 2nd field of ``ssh-ed25519 AAAA…``)."""
    try:
        key = load_ssh_public_key(b"ssh-ed25519 " + blob.encode())
    except (ValueError, binascii.Error, TypeError) as exc:
        raise SignatureError("not an ssh-ed25519 public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError("not an ed25519 key")
    return key


def canonical_blob(text: str) -> str:
    """The key blob from ``ssh-ed25519 AAAA… comment`` or a bare blob, validated."""
    parts = text.strip().split()
    blob = parts[1] if len(parts) >= 2 and parts[0] == "ssh-ed25519" else (parts[0] if parts else "")
    public_key_of(blob)
    return blob


def api_message(method: str, uri: str) -> str:
    """The string signed for an API call: ``METHOD,/path?query``."""
    return f"{method.upper()},{uri}"


def token_message(url: str, body: bytes = b"") -> str:
    """The string signed for a registry token request."""
    body_hash = base64.b64encode(hashlib.sha256(body).hexdigest().encode()).decode()
    return f"GET,{url},{body_hash}"


def _query_of(message: str) -> dict[str, list[str]]:
    target = message.split(",", 2)[1] if message.count(",") >= 1 else ""
    return parse_qs(urlsplit(target).query)


@dataclass
class SignatureVerifier:
    """Verifies signature, ``ts`` freshness and uniqueness; binding is the caller's business."""

    replay: ReplayCache
    window_seconds: int = 300

    def verify(self, authorization: str, candidates: list[str], now: float | None = None) -> SignedRequest:
        """The signer of the first candidate message the signature matches; SignatureError otherwise."""
        match = _HEADER.fullmatch(authorization.strip())
        if match is None:
            raise SignatureError("malformed signature header")
        blob = match.group(1)
        try:
            signature = base64.b64decode(match.group(2), validate=True)
        except binascii.Error:
            raise SignatureError("malformed signature") from None
        key = public_key_of(blob)
        message = next((m for m in candidates if _valid(key, signature, m)), None)
        if message is None:
            raise SignatureError("signature does not match the request")
        self._check_fresh(message, time.time() if now is None else now)
        self._check_unique(blob, message)
        return SignedRequest(public_key=blob, message=message)

    def _check_fresh(self, message: str, now: float) -> None:
        values = _query_of(message).get("ts") or [""]
        try:
            ts = int(values[0])
        except ValueError:
            raise SignatureError("signed request has no ts") from None
        if abs(now - ts) > self.window_seconds:
            raise SignatureError("signed request timestamp outside the window")

    def _check_unique(self, blob: str, message: str) -> None:
        nonce = (_query_of(message).get("nonce") or [""])[0]
        marker = f"n:{blob}:{nonce}" if nonce else "m:" + hashlib.sha256(f"{blob}|{message}".encode()).hexdigest()
        if not self.replay.first_use(marker, ttl_seconds=2 * self.window_seconds):
            raise SignatureError("replayed signed request")


def _valid(key: Ed25519PublicKey, signature: bytes, message: str) -> bool:
    try:
        key.verify(signature, message.encode())
    except InvalidSignature:
        return False
    return True
