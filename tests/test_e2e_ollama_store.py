"""An existing Ollama model store, written byte for byte as Ollama writes it, lists and runs in corral."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import ollama
import pytest

from serverproc import start_server, stop_server

pytestmark = pytest.mark.e2e
TEMPLATE = "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n"


def _blob(root: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / f"sha256-{digest}").write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _ollama_store(root: Path, gguf: Path) -> None:
    """Lay out blobs and a manifest the way `ollama create` does (Go json.Encoder, trailing newline)."""
    (root / "blobs").mkdir(parents=True)
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    os.link(gguf, root / "blobs" / f"sha256-{digest}")
    model = {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}",
             "size": gguf.stat().st_size}
    template = {"mediaType": "application/vnd.ollama.image.template", **_blob(root, TEMPLATE.encode())}
    params = {"mediaType": "application/vnd.ollama.image.params",
              **_blob(root, b'{"stop":["\\u003c|im_end|\\u003e"],"temperature":0}')}
    config = json.dumps({"model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
                         "model_type": "134.52M", "file_type": "Q4_1", "architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}, separators=(",", ":")).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **_blob(root, config)},
                "layers": [model, template, params]}
    path = root / "manifests" / "registry.ollama.ai" / "library" / "ollama-made" / "latest"
    path.parent.mkdir(parents=True)
    path.write_bytes(json.dumps(manifest, separators=(",", ":")).encode() + b"\n")


def test_an_ollama_store_lists_and_runs(server, tmp_path: Path) -> None:
    source = ollama.Client(host=server.url).show("smollm2:135m").modelfile.split("\nFROM ", 1)[1].split("\n")[0]
    _ollama_store(tmp_path / "ollama-models", Path(source))
    before = sorted(p.name for p in (tmp_path / "ollama-models" / "blobs").iterdir())
    srv = start_server(tmp_path / "run", {"OLLAMA_MODELS": str(tmp_path / "ollama-models")})
    try:
        client = ollama.Client(host=srv.url)
        listed = {m.model: m for m in client.list().models}
        assert "ollama-made:latest" in listed
        assert listed["ollama-made:latest"].details.quantization_level == "Q4_1"
        result = client.generate("ollama-made", "Say hi.", options={"num_predict": 8})
        assert result.response.strip() and result.done
        assert "<|im_end|>" in client.show("ollama-made").parameters
    finally:
        stop_server(srv.process)
    assert sorted(p.name for p in (tmp_path / "ollama-models" / "blobs").iterdir()) == before
