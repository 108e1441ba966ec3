"""A fresh ``corral serve`` answers on its gateway first and starts the services behind it meanwhile (issue 17
item 8): what a client sends the moment the gateway answers waits for the service it needs and gets its answer,
never a connection error."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serverproc import BIN, Server, free_port, spawn, stop_server

pytestmark = pytest.mark.e2e


@pytest.fixture
def just_up(tmp_path: Path) -> Iterator[Server]:
    """A corral on an empty store, returned as soon as its gateway answers GET / (not /api/tags, which needs the
    model store behind it)."""
    port = free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp_path / "models"),
           "CORRAL_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    env.pop("OLLAMA_API_KEY", None)
    url = f"http://127.0.0.1:{port}"
    process = spawn([str(BIN / "corral"), "serve"], env, tmp_path / "serve.log", f"{url}/")
    try:
        yield Server(url, f"127.0.0.1:{port}", env, tmp_path / "home", process)
    finally:
        stop_server(process)


def test_requests_sent_as_soon_as_the_gateway_answers_reach_the_services_behind_it(just_up: Server) -> None:
    with httpx.Client(base_url=just_up.url, timeout=60, trust_env=False) as client:
        tags = client.get("/api/tags")  # the model store
        running = client.get("/api/ps")  # inference
        missing = client.post("/api/show", json={"model": "nothing-here"})
    assert tags.status_code == 200 and tags.json() == {"models": []}
    assert running.status_code == 200 and running.json() == {"models": []}
    assert missing.status_code == 404 and missing.json() == {"error": "model 'nothing-here:latest' not found"}


def test_corral_run_right_after_the_gateway_answers_tries_to_pull_a_missing_model(just_up: Server) -> None:
    # as `ollama run` does; offline, the pull's error (from the job worker, started on first use) is what is seen
    result = just_up.corral("run", "nothing-here", "hi", timeout=120)
    assert result.returncode == 1
    assert "Error: pull model manifest:" in result.stderr
