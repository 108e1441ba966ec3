"""Issue 18 item 8 (input validation): pushing a model that is not stored here is a 404 naming it, answered before
any job is queued, instead of a 500 "not found" from inside the job."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from corral_registry.main import create_app
from corral_registry.settings import RegistrySettings


@pytest.mark.parametrize("stream", [True, False])
def test_input_validation_pushing_a_model_that_does_not_exist_is_a_404(tmp_path: Path, stream: bool) -> None:
    settings = RegistrySettings(models_dir=tmp_path / "models", home=tmp_path / "home", inline_worker=True)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/store/push", json={"model": "127.0.0.1:5000/team/none:v1", "insecure": True,
                                                  "stream": stream})
        plain = client.post("/store/push", json={"model": "none"})
    assert answer.status_code == 404 and answer.json() == {"error": "model '127.0.0.1:5000/team/none:v1' not found"}
    assert plain.status_code == 404 and plain.json() == {"error": "model 'none:latest' not found"}
