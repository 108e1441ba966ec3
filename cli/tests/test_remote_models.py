"""Remote models from the CLI: ``create --from --remote-host``, ``rm`` leaving the host alone, ``ls`` and ``show``."""

from __future__ import annotations

import httpx
from corral_cli.main import main

SHOWN = {"remote_model": "smollm2:135m", "remote_host": "http://cloud.example:11434",
         "details": {"family": "llama", "parameter_size": "135M", "quantization_level": "Q8_0"},
         "capabilities": ["completion"], "model_info": {"general.architecture": "llama"}}


def test_create_from_with_remote_host_sends_both(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.on("POST", "/api/create", server.ndjson({"status": "writing manifest"}, {"status": "success"}))

    assert main(["create", "mine", "--from", "smollm2:135m", "--remote-host", "cloud.example"],
                client=server.client()) == 0

    assert server.sent("POST", "/api/create")[0].json() == {
        "model": "mine", "from": "smollm2:135m", "remote_host": "cloud.example", "stream": True}


def test_create_with_remote_host_but_no_model_fails(server, tmp_path, capsys):
    (tmp_path / "Modelfile").write_bytes(b"GGUF")
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "Modelfile").write_text("FROM ./m.gguf\n")

    assert main(["create", "mine", "-f", str(tmp_path / "Modelfile"), "--remote-host", "x"],
                client=server.client()) == 1
    assert "--remote-host needs a model" in capsys.readouterr().err
    assert server.sent("POST", "/api/create") == []


def test_rm_of_a_remote_model_deletes_only_the_local_entry(server, capsys):
    server.on("POST", "/api/show", httpx.Response(200, json=SHOWN))
    server.on("DELETE", "/api/delete", httpx.Response(200))

    assert main(["rm", "mine"], client=server.client()) == 0

    assert capsys.readouterr().out == "deleted 'mine'\n"
    assert server.sent("POST", "/api/generate") == []  # no unload request reaches the remote host


def test_ls_shows_a_dash_for_a_remote_models_size_and_show_its_host(server, capsys):
    server.on("GET", "/api/tags", httpx.Response(200, json={"models": [
        {"name": "mine:latest", "model": "mine:latest", "remote_model": "smollm2:135m",
         "remote_host": "http://cloud.example:11434", "modified_at": "2025-01-01T00:00:00Z", "size": 321,
         "digest": "ab" * 32, "details": {}}]}))
    server.on("POST", "/api/show", httpx.Response(200, json=SHOWN))

    assert main(["ls"], client=server.client()) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[:3] == ["mine:latest", "abababababab", "-"]
    assert main(["show", "mine"], client=server.client()) == 0
    out = capsys.readouterr().out
    assert "Remote model    smollm2:135m" in out and "Remote URL      http://cloud.example:11434" in out


def test_ps_lists_a_remote_model_in_use_as_remote(server, capsys):
    server.on("GET", "/api/ps", httpx.Response(200, json={"models": [
        {"name": "mine", "model": "mine", "size": 0, "digest": "", "details": {},
         "expires_at": "2999-01-01T00:00:00Z", "size_vram": 0, "context_length": 8192,
         "remote_model": "smollm2:135m", "remote_host": "http://cloud.example:11434"}]}))

    assert main(["ps"], client=server.client()) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:4] == ["mine", "-", "remote", "8192"]
