"""Server secrets: the API-key pepper and the registry token signing key.

Embedded mode creates both under ``$CORRAL_HOME/auth/`` (mode 0600) on first use; distributed
mode takes the pepper from CORRAL_AUTH_PEPPER and the key from CORRAL_AUTH_SIGNING_KEY_FILE so
every replica shares them. Neither is ever written to the database.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from corral_common.fsio import create_once

from corral_auth.settings import AuthSettings


def _create_once(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` only if it does not exist (another process may race us)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    create_once(path, content)


def pepper(settings: AuthSettings) -> bytes:
    """The HMAC key for stored API-key digests."""
    if settings.pepper:
        return settings.pepper.encode()
    path = settings.home / "auth" / "pepper"
    if not path.exists():
        _create_once(path, secrets.token_hex(32).encode())
    return path.read_bytes().strip()


def signing_key_pem(settings: AuthSettings) -> bytes:
    """The PEM of the RSA key that signs registry tokens."""
    path = settings.signing_key_file or settings.home / "auth" / "token_signing_key.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _create_once(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    return path.read_bytes()
