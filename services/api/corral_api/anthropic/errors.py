"""Anthropic error objects, and a route class that answers every /v1/messages error with one."""

from __future__ import annotations

from typing import Any

from corral_common.errors import AppError

from corral_api.compat import error_route
from corral_api.openai.errors import OpenAIJSONResponse

# HTTP status → Anthropic's error type (the SDK picks its exception class by the status).
TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error",
         529: "overloaded_error"}


def error_body(status: int, message: str) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}``; the type follows the HTTP status."""
    return {"type": "error", "error": {"type": TYPES.get(status, "api_error"), "message": message}}


def error_response(exc: AppError) -> OpenAIJSONResponse:
    """A typed error as an Anthropic error object, status preserved."""
    return OpenAIJSONResponse(error_body(exc.status, exc.message), status_code=exc.status)


AnthropicRoute = error_route(error_response)
