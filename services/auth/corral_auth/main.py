"""The auth service app. Its endpoints arrive with its own issue; today it answers health checks."""

from __future__ import annotations

from fastapi import FastAPI

from corral_common.http import service_app


def create_app() -> FastAPI:
    """Build the auth app."""
    return service_app("corral auth")
