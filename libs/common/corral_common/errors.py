"""Typed application errors; one table maps each kind to its HTTP status."""

from __future__ import annotations


class AppError(Exception):
    """An error with a status code and the message a client sees as ``{"error": message}``."""

    status = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def body(self) -> dict[str, str]:
        """The JSON body Ollama clients expect."""
        return {"error": self.message}


class BadRequest(AppError):
    status = 400


class Unauthorized(AppError):
    status = 401


class Forbidden(AppError):
    status = 403


class NotFound(AppError):
    status = 404


class PayloadTooLarge(AppError):
    status = 413


class UnsupportedMediaType(AppError):
    status = 415


class ClientClosed(AppError):
    status = 499


class InternalError(AppError):
    status = 500


class BadGateway(AppError):
    status = 502


class ServiceUnavailable(AppError):
    status = 503


class InsufficientStorage(AppError):
    status = 507


_BY_STATUS = {cls.status: cls for cls in (BadRequest, Unauthorized, Forbidden, NotFound,
                                           PayloadTooLarge, UnsupportedMediaType, ClientClosed,
                                           InternalError, BadGateway, ServiceUnavailable,
                                           InsufficientStorage)}


def from_status(status: int, message: str) -> AppError:
    """Rebuild a typed error from a status and message received from another service."""
    return _BY_STATUS.get(status, AppError)(message, status)
