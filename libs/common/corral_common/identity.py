"""The user's ed25519 identity: ``$CORRAL_HOME/id_ed25519`` (OpenSSH) beside ``id_ed25519.pub`` (authorized_keys).

The CLI signs in with it and the registry signs token requests with it, so both load and create it here.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corral_common.env import corral_home
from corral_common.fsio import atomic_write, create_once

KEY_FILE = "id_ed25519"


def identity_path(environ: Mapping[str, str]) -> Path:
    """``$CORRAL_HOME/id_ed25519`` (``~/.corral/id_ed25519``)."""
    return corral_home(environ) / KEY_FILE


def public_line(key: Any) -> str:
    """``ssh-ed25519 AAAA…`` (authorized_keys format) of a private key."""
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def public_blob(key: Any) -> str:
    """The base64 SSH wire public key (the second field of ``ssh-ed25519 AAAA…``)."""
    return public_line(key).split()[1]


def load_identity(path: Path, create: bool = False) -> Any:
    """The private key at ``path``; None when absent, unless ``create`` makes one (with its ``.pub``)."""
    from cryptography.hazmat.primitives import serialization

    if not path.exists():
        if not create:
            return None
        _create(path)
    return serialization.load_ssh_private_key(path.read_bytes(), password=None)


def _create(path: Path) -> None:
    """A new key pair; a key another process created meanwhile is kept (and so is its ``.pub``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if create_once(path, private):
        atomic_write(path.with_name(path.name + ".pub"), (public_line(key) + "\n").encode())


def signed_request(key: Any, method: str, uri: str) -> tuple[str, str]:
    """Ollama's request signature: ``uri`` with ``ts`` and a ``nonce`` added, and its ``Authorization`` value
    ``<key blob>:<base64 signature of "METHOD,uri">`` (the nonce keeps two calls in one second distinct)."""
    nonce = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    signed = f"{uri}{'&' if '?' in uri else '?'}ts={int(time.time())}&nonce={nonce}"
    signature = base64.b64encode(key.sign(f"{method.upper()},{signed}".encode())).decode()
    return signed, f"{public_blob(key)}:{signature}"
