"""The registry protocol's error codes: one table maps each code to its status and message."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "RANGE_INVALID": (416, "requested range not satisfiable"),
    "TOO_LARGE": (413, "request entity too large"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "UNAVAILABLE": (503, "service unavailable"),
}


class RegistryError(Exception):
    """An error of the /v2 protocol, serialised as ``{"errors": [{"code", "message", "detail"}]}``."""

    def __init__(self, code: str, detail: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status, self.message = CODES[code]
        super().__init__(f"{code}: {self.message}")
        self.code, self.detail, self.headers = code, detail, headers or {}

    def body(self) -> dict[str, Any]:
        """The OCI error body."""
        return {"errors": [{"code": self.code, "message": self.message, "detail": self.detail}]}


def install_registry_errors(app: FastAPI) -> None:
    """Serialise RegistryError on an app that serves /v2."""

    async def handle(_request: Request, exc: RegistryError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    app.add_exception_handler(RegistryError, handle)  # type: ignore[arg-type]
