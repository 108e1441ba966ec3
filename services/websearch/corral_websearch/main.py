"""The websearch service app. Its endpoints arrive with its own issue; today it answers health checks."""

from __future__ import annotations

from fastapi import FastAPI

from corral_common.http import RequestContextMiddleware, install_error_handler


def create_app() -> FastAPI:
    """Build the websearch app."""
    app = FastAPI(title="corral websearch", docs_url=None, redoc_url=None)
    install_error_handler(app)
    app.add_middleware(RequestContextMiddleware)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
