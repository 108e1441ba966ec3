"""Remote models in the store: /api/create with from + remote_host, and what tags, show and resolve say of them."""

from __future__ import annotations

import json

import pytest

from corral_common.errors import BadRequest
from corral_common.remote import parse_ref, remote_url
from corral_common.schemas import DeleteRequest, NamedRequest, ShowRequest
from corral_registry import media_types, service
from corral_registry.store import ModelStore
from corral_registry.testing import create_events


def _remote(store: ModelStore, name: str = "mine", **extra) -> list[str]:
    fields = {"model": name, "from": "smollm2:135m", "remote_host": "cloud.example:8080", **extra}
    return [e["status"] for e in create_events(store, **fields)]


def _config(store: ModelStore, name: str) -> dict:
    path = store.root / f"manifests/registry.ollama.ai/library/{name}/latest"
    manifest = json.loads(path.read_bytes())
    return json.loads((store.root / "blobs" / manifest["config"]["digest"].replace(":", "-")).read_bytes())


def test_create_from_with_remote_host_writes_a_config_only_manifest(store: ModelStore) -> None:
    assert _remote(store, system="Be brief.")[-1] == "success"
    config = _config(store, "mine")
    assert config["remote_host"] == "http://cloud.example:8080" and config["remote_model"] == "smollm2:135m"
    path = store.root / "manifests/registry.ollama.ai/library/mine/latest"
    types = [layer["mediaType"] for layer in json.loads(path.read_bytes())["layers"]]
    assert media_types.MODEL not in types and types == [media_types.SYSTEM]


def test_remote_model_in_tags_show_and_resolve(store: ModelStore) -> None:
    _remote(store, info={"capabilities": ["completion", "tools"], "model_family": "llama", "context_length": 8192})
    entry = service.list_models(store)["models"][0]
    assert list(entry)[:4] == ["name", "model", "remote_model", "remote_host"]
    assert entry["remote_model"] == "smollm2:135m" and entry["remote_host"] == "http://cloud.example:8080"
    shown = service.show(store, ShowRequest(model="mine"))
    assert shown["remote_model"] == "smollm2:135m" and shown["remote_host"] == "http://cloud.example:8080"
    assert shown["capabilities"] == ["completion", "tools"]
    assert shown["model_info"] == {"general.architecture": "llama", "llama.context_length": 8192}
    assert shown["details"]["family"] == "llama"
    resolved = service.resolve(store, NamedRequest(model="mine"))
    assert (resolved.remote_host, resolved.remote_model, resolved.model_digest) == \
        ("http://cloud.example:8080", "smollm2:135m", "")


def test_remote_model_from_a_cloud_name_runs_the_base_name(store: ModelStore) -> None:
    _remote(store, **{"from": "gpt-oss:20b-cloud"})
    assert _config(store, "mine")["remote_model"] == "gpt-oss:20b"


def test_delete_removes_only_the_local_record(store: ModelStore) -> None:
    _remote(store)
    service.delete(store, DeleteRequest(model="mine"))
    assert service.list_models(store)["models"] == []
    assert [p.name for p in (store.root / "blobs").iterdir()] == []


def test_bad_info_and_bad_remote_are_400s(store: ModelStore) -> None:
    with pytest.raises(BadRequest, match='info field "context_length"'):
        _remote(store, info={"context_length": "big"})
    with pytest.raises(BadRequest, match="bad remote"):
        _remote(store, remote_host="ftp://x")


@pytest.mark.parametrize(("raw", "base", "source", "pulled"), [
    ("gpt-oss:120b-cloud", "gpt-oss:120b", "cloud", "gpt-oss:120b-cloud"),
    ("glm-4.6:cloud", "glm-4.6", "cloud", "glm-4.6:cloud"),
    ("gpt-oss:20b:cloud", "gpt-oss:20b", "cloud", "gpt-oss:20b-cloud"),
    ("host:5000/ns/m", "host:5000/ns/m", "", "host:5000/ns/m"),
    ("smollm2:135m", "smollm2:135m", "", "smollm2:135m"),
])
def test_cloud_names(raw: str, base: str, source: str, pulled: str) -> None:
    ref = parse_ref(raw)
    assert (ref.base, ref.source, ref.pull_name()) == (base, source, pulled)


@pytest.mark.parametrize(("raw", "url"), [
    ("cloud.example", "http://cloud.example:11434"), ("https://h:443/", "https://h:443"),
    ("http://127.0.0.1:9/v/../api", "http://127.0.0.1:9/api"), ("ollama.com", "https://ollama.com:443"),
])
def test_remote_url(raw: str, url: str) -> None:
    assert remote_url(raw) == url
