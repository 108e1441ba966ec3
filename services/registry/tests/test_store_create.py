"""The model store and the create pipeline on a real filesystem with small generated GGUF files."""

from __future__ import annotations

import asyncio
import json

import pytest

from corral_common.digest import Digest
from corral_common.errors import AppError, BadRequest, NotFound
from corral_common.names import ModelName
from corral_common.schemas import CopyRequest, CreateRequest, DeleteRequest, NamedRequest, ShowRequest
from corral_common.testing.ggufwriter import small_model
from corral_registry import service
from corral_registry.create import plan_create
from corral_registry.store import ModelStore
from corral_registry.testing import create_events, put_blob


def _create(store: ModelStore, **fields) -> list[str]:
    """The statuses one create request reports."""
    return [e["status"] for e in create_events(store, **fields)]


def _model(store: ModelStore, name: str = "tiny", **extra) -> Digest:
    digest = put_blob(store, small_model().build())
    _create(store, model=name, files={"tiny.gguf": str(digest)}, **extra)
    return digest


def test_create_writes_ollama_layout(store: ModelStore) -> None:
    digest = put_blob(store, small_model().build())
    statuses = _create(store, model="tiny", files={"tiny.gguf": str(digest)}, template="{{ .Prompt }}",
                       system="Be brief.", parameters={"temperature": 0.5, "stop": ["</s>"]},
                       license="MIT", messages=[{"role": "user", "content": "hi"}])
    assert statuses[0] == "parsing GGUF" and statuses[-2:] == ["writing manifest", "success"]
    path = store.root / "manifests/registry.ollama.ai/library/tiny/latest"
    manifest = json.loads(path.read_bytes())
    assert path.read_bytes().endswith(b"\n")
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    types = [layer["mediaType"] for layer in manifest["layers"]]
    assert types == ["application/vnd.ollama.image.model", "application/vnd.ollama.image.template",
                     "application/vnd.ollama.image.system", "application/vnd.ollama.image.license",
                     "application/vnd.ollama.image.params", "application/vnd.ollama.image.messages"]
    for layer in manifest["layers"] + [manifest["config"]]:
        blob = store.root / "blobs" / layer["digest"].replace(":", "-")
        assert blob.stat().st_size == layer["size"]
    config = json.loads((store.root / "blobs" / manifest["config"]["digest"].replace(":", "-")).read_bytes())
    assert config["model_format"] == "gguf" and config["model_family"] == "llama"
    assert config["file_type"] == "Q4_0"


def test_show_and_tags(store: ModelStore) -> None:
    _model(store, system="Be brief.", parameters={"num_ctx": 1024, "stop": ["a", "b"]})
    shown = service.show(store, ShowRequest(model="TINY"))
    assert shown["system"] == "Be brief."
    assert shown["model_info"]["general.architecture"] == "llama"
    assert "tokenizer.ggml.tokens" in shown["model_info"] and shown["model_info"]["tokenizer.ggml.tokens"] == []
    assert shown["parameters"].splitlines()[0].startswith("num_ctx")
    assert 'stop                           "a"' in shown["parameters"]
    assert "PARAMETER num_ctx 1024" in shown["modelfile"]
    assert shown["capabilities"] == ["completion"]
    tags = service.list_models(store)["models"]
    assert [m["name"] for m in tags] == ["tiny:latest"]
    assert tags[0]["details"]["family"] == "llama" and tags[0]["size"] > 0


def test_case_insensitive_names_reuse_existing_casing(store: ModelStore) -> None:
    _model(store, name="MyModel")
    assert store.resolve(ModelName.parse("mymodel")) == ModelName.parse("MyModel")
    _model(store, name="MYMODEL:v2")
    tags = sorted(m["name"] for m in service.list_models(store)["models"])
    assert tags == ["MyModel:latest", "MyModel:v2"]


def test_copy_then_delete_prunes_only_unreferenced_blobs(store: ModelStore) -> None:
    weights = _model(store, system="one")
    service.copy(store, CopyRequest(source="tiny", destination="tiny-copy"))
    service.delete(store, DeleteRequest(model="tiny"))
    assert store.has_blob(weights)
    service.delete(store, DeleteRequest(model="tiny-copy"))
    assert not store.has_blob(weights)
    assert list((store.root / "blobs").iterdir()) == []
    assert not (store.root / "manifests/registry.ollama.ai").exists()


def test_recreating_a_name_prunes_the_old_layers(store: ModelStore) -> None:
    _model(store, system="old system")
    old = Digest.of_bytes(b"old system")
    assert store.has_blob(old)
    _model(store, system="new system")
    assert not store.has_blob(old)


@pytest.mark.parametrize("fields, error", [
    ({"model": "x"}, "neither 'from' or 'files' was specified"),
    ({"model": "bad name", "from": "tiny"}, "invalid model name"),
    ({"model": "x", "from": "/etc/passwd"}, "invalid model name"),
    ({"model": "x", "files": {"../a.gguf": "sha256:" + "a" * 64}}, "file path must be relative"),
    ({"model": "x", "files": {"/a.gguf": "sha256:" + "a" * 64}}, "file path must be relative"),
    ({"model": "x", "files": {"a.gguf": "sha256:zz"}}, "invalid digest format"),
    ({"model": "x", "files": {"a.gguf": "sha256:" + "a" * 64}}, "not found"),
    ({"model": "x", "from": "tiny", "template": "{{ if }}"}, "template error"),
    ({"model": "x", "from": "tiny", "parameters": {"temperature": "hot"}}, "must be of type float32"),
    ({"model": "x", "from": "tiny", "messages": [{"role": "tool", "content": "x"}]}, "role must be one of"),
    ({"model": "x", "from": "tiny", "quantize": "q9"}, "unsupported quantization type Q9"),
    ({"model": "x", "from": "tiny", "adapters": {"a.gguf": "sha256:" + "a" * 64, "b.gguf": "sha256:" + "b" * 64}},
     "only one adapter is currently supported"),
])
def test_create_validation_errors(store: ModelStore, fields: dict, error: str) -> None:
    _model(store)
    before = sorted(p.name for p in (store.root / "blobs").iterdir())
    with pytest.raises(BadRequest, match=error):
        plan_create(store, CreateRequest.model_validate(fields))
    assert sorted(p.name for p in (store.root / "blobs").iterdir()) == before


def test_create_from_missing_model_is_404(store: ModelStore) -> None:
    with pytest.raises(NotFound):
        plan_create(store, CreateRequest.model_validate({"model": "x", "from": "ghost"}))


def test_non_gguf_upload_is_rejected(store: ModelStore) -> None:
    digest = put_blob(store, b"hello world, not a model")
    with pytest.raises(BadRequest, match="supplied file was not in GGUF format"):
        _create(store, model="x", files={"m.gguf": str(digest)})
    truncated = put_blob(store, small_model().build()[:200])
    with pytest.raises(BadRequest, match="GGUF"):
        _create(store, model="x", files={"m.gguf": str(truncated)})
    assert service.list_models(store) == {"models": []}


def test_blob_upload_verifies_digest_and_leaves_no_temp_files(store: ModelStore) -> None:
    wrong = Digest("0" * 64)

    async def chunks():
        yield b"abc"

    with pytest.raises(BadRequest, match="digest mismatch"):
        asyncio.run(store.write_blob(wrong, chunks()))
    assert not store.has_blob(wrong)
    assert list((store.root / "blobs").iterdir()) == []


def test_resolve_gives_what_inference_needs(store: ModelStore) -> None:
    weights = _model(store, template="{{ .System }}{{ .Prompt }}", system="sys")
    info = service.resolve(store, NamedRequest(model="tiny"))
    assert info.model_digest == weights.hex
    assert info.template == "{{ .System }}{{ .Prompt }}" and info.system == "sys"
    assert info.bos_token == "<s>" or info.bos_token == ""
    with pytest.raises(AppError):
        service.resolve(store, NamedRequest(model="ghost"))
