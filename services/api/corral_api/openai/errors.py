"""OpenAI error objects, and a route class that answers every /v1 error with one."""

from __future__ import annotations

from typing import Any

from corral_common.errors import AppError
from corral_common.http import GoJSONResponse

from corral_api.compat import error_route

_TYPES = {400: "invalid_request_error", 404: "not_found_error"}


class OpenAIJSONResponse(GoJSONResponse):
    """JSON with Go's escaping and the plain content type Ollama's OpenAI layer sets."""

    media_type = "application/json"


def error_object(status: int, message: str) -> dict[str, Any]:
    """``{"error": {message, type, param, code}}``; the type follows the HTTP status."""
    return {"error": {"message": message, "type": _TYPES.get(status, "api_error"), "param": None, "code": None}}


def error_response(exc: AppError) -> OpenAIJSONResponse:
    """A typed error as an OpenAI error object, status preserved."""
    return OpenAIJSONResponse(error_object(exc.status, exc.message), status_code=exc.status)


# Routes whose typed errors leave as OpenAI error objects (the native /api shape stays untouched).
OpenAIRoute = error_route(error_response)
