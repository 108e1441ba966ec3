"""Fixtures: an auth runtime and app on a throwaway SQLite database with a fixed pepper."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.testclient import TestClient

from corral_auth.limits import Limits
from corral_auth.main import create_app
from corral_auth.runtime import AuthRuntime, build_runtime
from corral_auth.settings import AuthSettings

PEPPER = "unit-test-pepper"


@pytest.fixture(scope="session")
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One RSA token-signing key for the whole session (generating one per test is slow)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = tmp_path_factory.mktemp("keys") / "signing.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def make_settings(home: Path, **overrides) -> AuthSettings:
    """Settings for one test: its own database and secrets."""
    values = dict(database_url=f"sqlite:///{home / 'auth.sqlite'}", home=home, pepper=PEPPER,
                  limits=Limits(rate_per_second=50, burst=50, lockout_failures=5, lockout_seconds=60))
    values.update(overrides)
    return AuthSettings(**values)


@pytest.fixture
def settings_for(signing_key_file: Path):
    """Build settings for a home directory, with overrides (e.g. a Postgres URL)."""
    return lambda home, **overrides: make_settings(home, **{"signing_key_file": signing_key_file, **overrides})


@pytest.fixture
def settings(tmp_path: Path, signing_key_file: Path) -> AuthSettings:
    return make_settings(tmp_path, signing_key_file=signing_key_file)


@pytest.fixture
def runtime(settings: AuthSettings) -> Iterator[AuthRuntime]:
    rt = build_runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def http(settings: AuthSettings) -> Iterator[TestClient]:
    """The auth app over HTTP, on the test's own database."""
    with TestClient(create_app(settings)) as client:
        yield client


class Device:
    """A client-side ed25519 key that signs requests the way Ollama's client does."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()

    @property
    def public_line(self) -> str:
        raw = self.key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        return raw.decode()

    @property
    def blob(self) -> str:
        return self.public_line.split()[1]

    def sign(self, message: str) -> str:
        return f"{self.blob}:{base64.b64encode(self.key.sign(message.encode())).decode()}"

    def uri(self, path: str, ts: int | None = None, nonce: str | None = None) -> str:
        nonce = nonce or secrets.token_urlsafe(12)
        return f"{path}?ts={int(time.time()) if ts is None else ts}&nonce={nonce}"


@pytest.fixture
def device() -> Device:
    return Device()


@pytest.fixture
def other_device() -> Device:
    return Device()
