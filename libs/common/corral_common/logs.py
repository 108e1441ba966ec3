"""structlog setup shared by every service: one JSON (or console) line per event, request id bound."""

from __future__ import annotations

import logging
import sys

import structlog

REQUEST_ID_HEADER = "X-Request-ID"


def configure_logging(service: str, debug: bool = False, json_lines: bool = False) -> None:
    """Configure structlog and stdlib logging once per process."""
    level = logging.DEBUG if debug else logging.INFO
    renderer = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            _add_service(service),
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")


def _add_service(service: str):
    """A processor that names the service on every line (contextvars do not reach request tasks)."""

    def add(_logger: object, _method: str, event: dict) -> dict:
        event.setdefault("service", service)
        return event

    return add


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger for a module."""
    return structlog.get_logger(name)
