"""Refusals that carry RFC 6750 / RFC 6585 headers along with the ``{"error": ...}`` body."""

from __future__ import annotations

from corral_common.errors import AppError

REALM = 'Bearer realm="corral"'
# One body for every 401: an unknown key id, a wrong secret, a revoked or expired key look alike.
UNAUTHORIZED = "unauthorized: missing or invalid API key"


class Denied(AppError):
    """An auth refusal; ``headers`` go on the response."""

    headers: dict[str, str] = {}


class Unauthenticated(Denied):
    """No usable credential (401)."""

    status = 401

    def __init__(self, message: str = UNAUTHORIZED, error: str = "invalid_token") -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": f'{REALM}, error="{error}"' if error else REALM}


class InsufficientScope(Denied):
    """A valid credential without the scope the route needs (403)."""

    status = 403

    def __init__(self, scope: str) -> None:
        super().__init__(f"forbidden: this key lacks the {scope!r} scope")
        self.headers = {"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'}


class RateLimited(Denied):
    """Too many requests, or too many failed attempts (429)."""

    status = 429

    def __init__(self, retry_after: int, message: str = "too many requests, retry later") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}
