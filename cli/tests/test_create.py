"""``corral create``: hashing, blob upload and the /api/create request built from a Modelfile."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from corral_cli.commands.create import request_file_names
from corral_cli.main import main

WEIGHTS = b"GGUF" + bytes(range(256)) * 64
DIGEST = "sha256:" + hashlib.sha256(WEIGHTS).hexdigest()
MODELFILE = '''# a comment
FROM ./model.gguf
PARAMETER temperature 0.7
PARAMETER num_ctx 4096
PARAMETER stop <|im_start|>
PARAMETER stop <|im_end|>
TEMPLATE """{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>{{ end }}"""
SYSTEM You are terse.
MESSAGE user Hi there
MESSAGE assistant Hello!
LICENSE MIT
LICENSE """Apache 2.0
full text"""
'''
CREATED = ({"status": "parsing GGUF"}, {"status": f"using existing layer {DIGEST}"},
           {"status": "creating new layer sha256:1234"}, {"status": "writing manifest"}, {"status": "success"})


@pytest.fixture
def model_dir(tmp_path):
    (tmp_path / "model.gguf").write_bytes(WEIGHTS)
    (tmp_path / "Modelfile").write_text(MODELFILE)
    return tmp_path


def test_create_uploads_the_file_then_sends_the_modelfile_fields(server, model_dir, capsys):
    server.on("HEAD", f"/api/blobs/{DIGEST}", httpx.Response(404))
    server.on("POST", f"/api/blobs/{DIGEST}", httpx.Response(201))
    server.on("POST", "/api/create", server.ndjson(*CREATED))

    code = main(["create", "mine", "-f", str(model_dir / "Modelfile")], client=server.client())

    assert code == 0
    assert [(r.method, r.path) for r in server.requests] == [
        ("HEAD", "/"), ("HEAD", f"/api/blobs/{DIGEST}"), ("POST", f"/api/blobs/{DIGEST}"), ("POST", "/api/create")]
    assert server.sent("POST", f"/api/blobs/{DIGEST}")[0].body == WEIGHTS
    assert server.sent("POST", "/api/create")[0].json() == {
        "model": "mine",
        "files": {"model.gguf": DIGEST},
        "template": "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>{{ end }}",
        "system": "You are terse.",
        "parameters": {"temperature": 0.7, "num_ctx": 4096, "stop": ["<|im_start|>", "<|im_end|>"]},
        "messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}],
        "license": ["MIT", "Apache 2.0\nfull text"],
        "stream": True,
    }
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "gathering model components\n"
        f"copying file {DIGEST} 0%\n"
        f"copying file {DIGEST} 100%\n"
        "parsing GGUF\n"
        f"using existing layer {DIGEST}\n"
        "creating new layer sha256:1234\n"
        "writing manifest\n"
        "success\n")


def test_create_skips_blobs_the_server_has_and_passes_quantize(server, model_dir):
    server.on("HEAD", f"/api/blobs/{DIGEST}", httpx.Response(200))
    server.on("POST", "/api/create", server.ndjson({"status": "success"}))

    assert main(["create", "mine", "-f", str(model_dir / "Modelfile"), "-q", "q4_K_M"], client=server.client()) == 0

    assert server.sent("POST", f"/api/blobs/{DIGEST}") == []
    assert server.sent("POST", "/api/create")[0].json()["quantize"] == "q4_K_M"


def test_from_a_model_name_is_sent_as_from(server, tmp_path, monkeypatch):
    (tmp_path / "Modelfile").write_text("FROM llama3.2\nSYSTEM Be brief.\nADAPTER ./lora.gguf\n")
    (tmp_path / "lora.gguf").write_bytes(b"GGUF-lora")
    lora = "sha256:" + hashlib.sha256(b"GGUF-lora").hexdigest()
    server.on("HEAD", f"/api/blobs/{lora}", httpx.Response(404))
    server.on("POST", f"/api/blobs/{lora}", httpx.Response(201))
    server.on("POST", "/api/create", server.ndjson({"status": "success"}))
    monkeypatch.chdir(tmp_path)

    assert main(["create", "brief"], client=server.client()) == 0

    assert server.sent("POST", "/api/create")[0].json() == {
        "model": "brief", "from": "llama3.2", "system": "Be brief.", "adapters": {"lora.gguf": lora}, "stream": True}


def test_without_a_modelfile_the_directory_is_the_model(server, tmp_path, monkeypatch):
    (tmp_path / "weights.gguf").write_bytes(WEIGHTS)
    server.on("HEAD", f"/api/blobs/{DIGEST}", httpx.Response(200))
    server.on("POST", "/api/create", server.ndjson({"status": "success"}))
    monkeypatch.chdir(tmp_path)

    assert main(["create", "dir-model"], client=server.client()) == 0

    assert server.sent("POST", "/api/create")[0].json()["files"] == {"weights.gguf": DIGEST}


def test_server_error_during_create_is_reported(server, model_dir, capsys):
    server.on("HEAD", f"/api/blobs/{DIGEST}", httpx.Response(200))
    server.on("POST", "/api/create", server.ndjson({"status": "parsing GGUF"}, {"error": "unknown type"}))

    assert main(["create", "mine", "-f", str(model_dir / "Modelfile")], client=server.client()) == 1

    err = capsys.readouterr().err
    assert err.endswith("parsing GGUF\nError: unknown type\n")


def test_modelfile_errors_name_the_line(server, tmp_path, capsys):
    (tmp_path / "Modelfile").write_text("FROM x\nPARAMETER temperature hot\n")

    assert main(["create", "m", "-f", str(tmp_path / "Modelfile")], client=server.client()) == 1

    assert capsys.readouterr().err == "Error: (line 2): invalid float value [hot]\n"
    assert server.sent("POST", "/api/create") == []


def test_missing_modelfile_and_bad_names(server, tmp_path, capsys):
    assert main(["create", "m", "-f", str(tmp_path / "nope")], client=server.client()) == 1
    assert capsys.readouterr().err == "Error: specified Modelfile wasn't found\n"
    assert main(["create", "bad/na:me:x"], client=server.client()) == 1
    assert capsys.readouterr().err == "Error: invalid model name: bad/na:me:x\n"


def test_several_files_are_named_below_their_common_directory(tmp_path):
    files = [tmp_path / "a" / "model-1.safetensors", tmp_path / "a" / "sub" / "config.json"]
    assert request_file_names(files) == {files[0]: "model-1.safetensors", files[1]: "sub/config.json"}
    assert request_file_names([tmp_path / "x" / "one.gguf"]) == {tmp_path / "x" / "one.gguf": "one.gguf"}
