"""Readiness: checks run together, failures and timeouts are named, the report is cached briefly."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from corral_common.health import Check, DependencyDown, Readiness, directory_probe, run_check, sql_probe
from corral_common.http import service_app


async def _ok() -> None:
    return None


async def _refused() -> None:
    raise ConnectionRefusedError("connection refused")


async def _hangs() -> None:
    await asyncio.sleep(10)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_report_names_what_is_down_and_why() -> None:
    readiness = Readiness([Check("database", _ok), Check("broker", _refused), Check("s3", _hangs, timeout=0.05)])
    body = asyncio.run(readiness.report()).body()
    assert body == {"status": "not ready", "checks": {"database": "ok", "broker": "down: connection refused",
                                                      "s3": "down: no answer within 0.05s"}}


def test_checks_run_concurrently() -> None:
    started: list[str] = []

    def slow(name: str):
        async def probe() -> None:
            started.append(name)
            await asyncio.sleep(0.2)
        return probe

    readiness = Readiness([Check(n, slow(n)) for n in ("a", "b", "c")])
    report = asyncio.run(asyncio.wait_for(readiness.report(), 0.5))  # three 0.2 s probes in series: 0.6 s
    assert report.ready and sorted(started) == ["a", "b", "c"]


def test_report_is_cached_for_a_second() -> None:
    calls, now = [], [100.0]

    async def counted() -> None:
        calls.append(1)

    async def scenario() -> None:
        readiness = Readiness([Check("db", counted)], cache_seconds=1.0, clock=lambda: now[0])
        await asyncio.gather(*(readiness.report() for _ in range(20)))  # a burst of probes: one run
        now[0] += 0.5
        await readiness.report()
        assert len(calls) == 1
        now[0] += 0.6
        await readiness.report()
        assert len(calls) == 2

    asyncio.run(scenario())


def test_no_checks_is_ready() -> None:
    assert asyncio.run(Readiness().report()).body() == {"status": "ready", "checks": {}}


def test_directory_probe(tmp_path: Path) -> None:
    assert asyncio.run(run_check(Check("dir", directory_probe(tmp_path, writable=True)))) == "ok"
    missing = asyncio.run(run_check(Check("dir", directory_probe(tmp_path / "nope"))))
    assert missing.startswith("down: ") and "is not a directory" in missing


def test_sql_probe_against_a_closed_port() -> None:
    from sqlalchemy import create_engine

    engine = create_engine(f"postgresql+psycopg://test:test@127.0.0.1:{_closed_port()}/test")
    outcome = asyncio.run(run_check(Check("database", sql_probe(engine), timeout=5)))
    assert outcome.startswith("down: ") and "refused" in outcome.lower()


def test_dependency_down_message_is_the_reason() -> None:
    async def full() -> None:
        raise DependencyDown("disk full")

    assert asyncio.run(run_check(Check("disk", full))) == "down: disk full"


@pytest.mark.parametrize("path", ["/healthz", "/health"])
def test_liveness_answers_while_readiness_fails(path: str) -> None:
    app: FastAPI = service_app("corral test")
    app.state.readiness.add(Check("broker", _refused))

    async def probe() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
            return await client.get(path), await client.get("/readyz")

    live, ready = asyncio.run(probe())
    assert live.json() == {"status": "ok"}
    assert ready.status_code == 503
    assert ready.json() == {"status": "not ready", "checks": {"broker": "down: connection refused"}}
