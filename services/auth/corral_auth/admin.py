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
