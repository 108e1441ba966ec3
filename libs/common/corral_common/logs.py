"""structlog setup shared by every service: one JSON (or console) line per event, request id bound.

``CORRAL_LOG_FORMAT=json|console`` picks the renderer; unset, a terminal gets console lines and anything
else (a container, a file) JSON. Standard-library loggers (uvicorn, celery, httpx) go through the same
renderer, so a JSON log stays one object per line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import structlog

from corral_common import tracing
from corral_common.env import env_str

REQUEST_ID_HEADER = "X-Request-ID"
LOG_FORMAT_ENV = "CORRAL_LOG_FORMAT"
LogFormat = Literal["json", "console"]
FORMATS: tuple[str, ...] = ("json", "console")
# Fields a request's handlers learn (the model) for the access line the middleware writes at its end: a dict
# shared by reference, so a value noted in a copied context (a streaming task) still reaches the middleware.
_request_notes: ContextVar[dict[str, Any] | None] = ContextVar("corral_request_notes", default=None)


class LogFormatError(ValueError):
    """CORRAL_LOG_FORMAT names a format that does not exist."""


def log_format(environ: Mapping[str, str], stream: TextIO | None = None) -> LogFormat:
    """CORRAL_LOG_FORMAT, or console on a terminal and JSON otherwise."""
    value = env_str(environ, LOG_FORMAT_ENV).lower()
    if value in FORMATS:
        return value  # type: ignore[return-value]
    if value:
        raise LogFormatError(f"{LOG_FORMAT_ENV} must be json or console, not {value!r}")
    stream = stream if stream is not None else sys.stderr
    return "console" if _is_terminal(stream) else "json"


def _is_terminal(stream: TextIO) -> bool:
    """Whether a stream is a terminal (a closed or odd stream is not)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _renderer(fmt: str) -> Any:
    """The last processor: one JSON object, or a console line."""
    if fmt == "json":
        return structlog.processors.JSONRenderer(sort_keys=False)
    return structlog.dev.ConsoleRenderer(colors=False)


def _shared_processors(service: str) -> list[Any]:
    """What every line gets, from structlog and from standard-library loggers alike."""
    return [
        _add_service(service),
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def configure_logging(service: str, debug: bool = False, fmt: str = "") -> None:
    """Configure structlog and stdlib logging once per process (``fmt`` empty: decided by stderr)."""
    fmt = fmt or log_format({})
    shared = _shared_processors(service)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, _renderer(fmt)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG if debug else logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    _route_stdlib(shared, fmt)


def _route_stdlib(shared: list[Any], fmt: str) -> None:
    """Standard-library records (warnings and up) rendered like structlog's own lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _renderer(fmt)]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)  # Python warnings (celery's, say) become records too, not bare stderr text


def _add_service(service: str):
    """A processor that names the service on every line (contextvars do not reach request tasks)."""

    def add(_logger: object, _method: str, event: dict) -> dict:
        event.setdefault("service", service)
        return event

    return add


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger for a module."""
    return structlog.get_logger(name)


@contextmanager
def request_context(request_id: str) -> Iterator[dict[str, Any]]:
    """Bind a request id to every line logged while the request runs; yields the notes for its access line."""
    notes: dict[str, Any] = {}
    token = _request_notes.set(notes)
    try:
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            yield notes
    finally:
        _request_notes.reset(token)


def note_request(**fields: Any) -> None:
    """Add fields (e.g. ``model``) to the current request's later log lines, its access line and its span."""
    notes = _request_notes.get()
    if notes is not None:
        notes.update(fields)
    structlog.contextvars.bind_contextvars(**fields)
    tracing.annotate(**fields)


@dataclass(frozen=True)
class Telemetry:
    """How a process logs and traces: CORRAL_LOG_FORMAT and OTEL_EXPORTER_OTLP_ENDPOINT, read at construction."""

    log_format: str = ""  # json | console; empty: console on a terminal, JSON otherwise
    otlp_endpoint: str = ""  # empty: tracing off

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Telemetry":
        """The variables of ``environ`` (an invalid log format raises LogFormatError)."""
        return cls(log_format(environ), tracing.otlp_endpoint(environ))


def configure_telemetry(service: str, debug: bool, telemetry: Telemetry) -> None:
    """Set up a process's logging (OLLAMA_DEBUG adds debug lines) and, when an endpoint is set, its tracing."""
    configure_logging(service, debug, telemetry.log_format)
    tracing.configure_tracing(service, telemetry.otlp_endpoint)
