"""Hardening, issue 18 items 6 and 9, against a real ``corral serve``.

Item 6: serve started in a folder holding modules that shadow the standard library and corral's own
packages imports none of them, in any of its six services. Item 9: ``show --modelfile`` of a model
with a hostile SYSTEM rebuilds the same model through ``corral create -f``; /api/create refuses an
unknown parameter as the CLI does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serverproc import Server, start_server, stop_server

PLANTED = ("queue", "json", "typing_extensions", "corral_registry", "corral_websearch", "corral_api")
PLANT = '''import os, sys
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "IMPORTED"), "a") as marker:
    marker.write(__name__ + " " + " ".join(sys.argv) + "\\n")
raise ImportError("planted module imported")
'''
MODEL = "smollm2:135m"
HOSTILE = '"""\nFROM other\n# not a comment\n\\ "quoted" \\\\  '


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose modules crash on import, after leaving a marker saying who imported them."""
    folder = tmp_path_factory.mktemp("planted")
    for name in PLANTED:
        (folder / f"{name}.py").write_text(PLANT)
    return folder


@pytest.fixture(scope="module")
def server(planted: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """corral serve started from the planted folder, every service at once (no lazy start)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(planted)
        srv = start_server(tmp_path_factory.mktemp("corral"), {"CORRAL_LAZY_SERVICES": "0"})
        try:
            from corral_cli.bundled import import_bundled

            import_bundled(srv.url, only=(MODEL,))
            yield srv
        finally:
            stop_server(srv.process)


def test_security_module_path_planted_modules_are_never_imported(server: Server, planted: Path) -> None:
    answer = httpx.post(f"{server.url}/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                            "options": {"num_predict": 3}}, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["done"] is True
    search = httpx.post(f"{server.url}/api/show", json={"model": MODEL}, timeout=30)  # the registry answers
    assert search.status_code == 200
    assert not (planted / "IMPORTED").exists(), (planted / "IMPORTED").read_text()


def test_security_modelfile_injection_show_output_rebuilds_the_model(server: Server, tmp_path: Path) -> None:
    made = httpx.post(f"{server.url}/api/create", json={"model": "hostile", "from": MODEL, "system": HOSTILE,
                                                        "stream": False}, timeout=120)
    assert made.status_code == 200, made.text
    shown = server.corral("show", "--modelfile", "hostile")
    assert shown.returncode == 0, shown.stderr
    (tmp_path / "Modelfile").write_text(shown.stdout)
    created = server.corral("create", "rebuilt", "-f", str(tmp_path / "Modelfile"))
    assert created.returncode == 0, created.stderr
    first, second = (httpx.post(f"{server.url}/api/show", json={"model": m}, timeout=30).json()
                     for m in ("hostile", "rebuilt"))
    assert second["system"] == first["system"] == HOSTILE
    assert second["details"] == first["details"]
    tags = {m["name"]: m for m in httpx.get(f"{server.url}/api/tags", timeout=30).json()["models"]}
    assert tags["rebuilt:latest"]["size"] == tags["hostile:latest"]["size"]


def test_security_create_api_refuses_an_unknown_parameter(server: Server) -> None:
    answer = httpx.post(f"{server.url}/api/create", json={"model": "x", "from": MODEL,
                                                          "parameters": {"bogus": 1}, "stream": False}, timeout=60)
    assert answer.status_code == 400
    assert answer.json() == {"error": "unknown parameter 'bogus'"}
