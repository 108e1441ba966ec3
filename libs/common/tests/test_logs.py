"""Log lines: the format chosen by CORRAL_LOG_FORMAT or the terminal, JSON keys, the access line, debug lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import structlog

from corral_common.http import service_app
from corral_common.logs import LogFormatError, configure_logging, get_logger, log_format, note_request


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test configures logging onto capsys's stream, which closes after it: back to the defaults."""
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_from_environment_or_terminal() -> None:
    assert log_format({"CORRAL_LOG_FORMAT": "JSON"}) == "json"
    assert log_format({"CORRAL_LOG_FORMAT": "console"}, io.StringIO()) == "console"
    assert log_format({}, _Tty()) == "console"
    assert log_format({}, io.StringIO()) == "json"
    with pytest.raises(LogFormatError, match="json or console"):
        log_format({"CORRAL_LOG_FORMAT": "xml"})


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_carry_timestamp_level_service(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("registry", fmt="json")
    get_logger("t").info("model stored", model="smollm2")
    get_logger("t").debug("not shown without OLLAMA_DEBUG")
    logging.getLogger("celery.worker").warning("stdlib says %s", "hi")
    first, second = _json_lines(capsys.readouterr().err)
    assert first["event"] == "model stored" and first["service"] == "registry" and first["level"] == "info"
    assert first["model"] == "smollm2" and first["timestamp"].endswith("Z")
    assert second["event"] == "stdlib says hi" and second["level"] == "warning" and second["service"] == "registry"


def test_debug_lines_appear_with_debug(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("inference", debug=True, fmt="json")
    get_logger("t").debug("scheduler loads model", model="m")
    (line,) = _json_lines(capsys.readouterr().err)
    assert line["level"] == "debug" and line["event"] == "scheduler loads model"


def test_console_lines_are_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("api", fmt="console")
    get_logger("t").info("hello", model="m")
    err = capsys.readouterr().err
    assert "hello" in err and "model=m" in err and not err.startswith("{")


def test_access_line_has_request_id_route_status_duration_model(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("inference", fmt="json")
    app = service_app("corral test")

    @app.post("/run/{what}")
    async def run(what: str) -> dict[str, str]:
        note_request(model="smollm2:135m")
        get_logger("t").info("inside")
        return {"ok": what}

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
            return await client.post("/run/completion", headers={"X-Request-ID": "abc123"})

    assert asyncio.run(call()).headers["x-request-id"] == "abc123"
    inside, access = _json_lines(capsys.readouterr().err)
    assert inside["request_id"] == "abc123" and inside["model"] == "smollm2:135m"
    assert access["event"] == "request" and access["request_id"] == "abc123"
    assert access["route"] == "/run/{what}" and access["path"] == "/run/completion"
    assert access["status"] == 200 and access["model"] == "smollm2:135m" and access["duration_ms"] >= 0
    assert {"timestamp", "level", "service"} <= access.keys()
