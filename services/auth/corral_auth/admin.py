"""Operator commands that work on the auth database directly (on the server's host, no server needed)."""

from __future__ import annotations

from corral_auth.accounts import IssuedKey
from corral_auth.runtime import build_runtime
from corral_auth.settings import AuthSettings


def bootstrap(settings: AuthSettings, name: str = "admin") -> IssuedKey:
    """Create the first admin user and its all-scopes key."""
    runtime = build_runtime(settings)
    try:
        return runtime.accounts.bootstrap(name)
    finally:
        runtime.close()


def create_user(settings: AuthSettings, name: str, admin: bool = False) -> dict:
    """Add a user."""
    runtime = build_runtime(settings)
    try:
        return runtime.accounts.create_user(name, admin)
    finally:
        runtime.close()


def set_private(settings: AuthSettings, repository: str, private: bool = True) -> None:
    """Make ``ns/model`` private (pulls need ownership or a grant) or public again."""
    from corral_auth.tokens import parse_scope

    name = parse_scope(f"repository:{repository}:pull").name  # a 400 unless ns/model
    runtime = build_runtime(settings)
    try:
        runtime.policy.set_private(name, private)
    finally:
        runtime.close()
