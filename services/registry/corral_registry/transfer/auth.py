"""Registry token auth as Ollama does it: a ``Bearer`` challenge answered with an ed25519-signed token request.

The key pair lives in ``$CORRAL_HOME/id_ed25519`` (OpenSSH format, created on first need, with
``id_ed25519.pub`` in authorized_keys format). The signed string is
``GET,<token URL>,<base64(hex(sha256("")))>`` and the header ``Authorization: <pubkey>:<sig>``.
The token request only ever goes to the host of the registry that asked (OLL-14).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from corral_common.errors import Unauthorized
from corral_common.identity import load_identity, public_blob

EMPTY_BODY = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()
MAX_TOKEN_BYTES = 64 << 10
_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Challenge:
    """The parameters of ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``."""

    realm: str
    service: str = ""
    scope: str = ""


def parse_challenge(header: str | None) -> Challenge | None:
    """A Bearer challenge, or None for anything else."""
    if not header or not header.strip().lower().startswith("bearer "):
        return None
    params = dict(_PARAM.findall(header))
    return Challenge(params["realm"], params.get("service", ""), params.get("scope", "")) if "realm" in params else None


class KeyPair:
    """The user's ed25519 identity (``corral_common.identity``), loaded or created on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: Any = None

    def _load(self) -> Any:
        if self._key is None:
            self._key = load_identity(self.path, create=True)
        return self._key

    def public_key(self) -> str:
        """The base64 SSH wire public key (the second field of ``ssh-ed25519 AAAA...``)."""
        return public_blob(self._load())

    def sign(self, data: bytes) -> str:
        """``<pubkey>:<base64 signature>``, Ollama's auth.Sign."""
        return f"{self.public_key()}:{base64.b64encode(self._load().sign(data)).decode()}"


def token_url(challenge: Challenge, now: float | None = None) -> str:
    """The realm with ``nonce``, ``scope`` (one per space-separated scope), ``service`` and ``ts``, keys sorted."""
    nonce = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
    query = [("nonce", nonce)] + [("scope", s) for s in challenge.scope.split() if s]
    query += [("service", challenge.service), ("ts", str(int(now if now is not None else time.time())))]
    separator = "&" if "?" in challenge.realm else "?"
    return challenge.realm + separator + urlencode(query)


def same_host(a: httpx.URL, b: httpx.URL) -> bool:
    """Same scheme-effective host and port (``https://h`` equals ``https://h:443``)."""
    def key(url: httpx.URL) -> tuple[str, int]:
        return url.host.lower(), url.port or (443 if url.scheme == "https" else 80)

    return key(a) == key(b)


class TokenSource:
    """Fetches bearer tokens from the realm a registry names, signed with the key or an API key."""

    def __init__(self, keys: KeyPair, api_key: str = "") -> None:
        self.keys, self.api_key = keys, api_key

    def fetch(self, http: httpx.Client, challenge: Challenge, original: httpx.URL) -> str:
        """A token for the challenge; the realm must be on the original request's host."""
        realm = httpx.URL(challenge.realm)
        if realm.scheme not in ("http", "https") or not same_host(realm, original):
            raise Unauthorized(f'realm host "{realm.netloc.decode()}" does not match original host '
                               f'"{original.netloc.decode()}"')
        url = token_url(challenge)
        auth = f"Bearer {self.api_key}" if self.api_key else self.keys.sign(f"GET,{url},{EMPTY_BODY}".encode())
        with http.stream("GET", url, headers={"Authorization": auth, "Accept-Encoding": "identity"}) as response:
            body = b""
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > MAX_TOKEN_BYTES:
                    raise Unauthorized("token response too large")
        if response.status_code != 200:
            raise Unauthorized(f"unauthorized: token request failed with status {response.status_code}")
        try:
            answer = httpx.Response(200, content=body).json()
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise Unauthorized("unauthorized: the token response has no token")
        return token
