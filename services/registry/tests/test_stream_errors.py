"""Issue 18 item 8: a job that fails after its first progress line ends the stream with an error line that keeps
its status, so the gateway answers ``stream: false`` with that status (a 502 for a registry host no resolver
knows), not a bare 500."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.testclient import TestClient

from corral_registry.main import create_app
from corral_registry.settings import RegistrySettings


def test_input_validation_an_error_after_the_first_progress_line_keeps_its_status(tmp_path: Path) -> None:
    settings = RegistrySettings(models_dir=tmp_path / "models", home=tmp_path / "home", inline_worker=True)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/store/pull", json={"model": "example.invalid/team/model:v1", "insecure": True})
    lines = [json.loads(line) for line in answer.text.splitlines() if line]
    assert answer.status_code == 200 and lines[0] == {"status": "pulling manifest"}
    assert lines[-1]["status"] == 502
    assert lines[-1]["error"].startswith("pull model manifest: cannot resolve registry host example.invalid")
