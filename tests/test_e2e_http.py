"""Raw HTTP against a real corral: status codes, error texts, content types, and the edge guards."""

from __future__ import annotations

import json
import os

import httpx
import pytest

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def test_root_version_and_content_types(http: httpx.Client) -> None:
    root = http.get("/")
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert http.head("/").status_code == 200
    version = http.get("/api/version")
    assert version.headers["content-type"] == "application/json; charset=utf-8"
    major, minor, _patch = (int(p) for p in version.json()["version"].split("."))
    assert (major, minor) >= (0, 6)
    assert http.head("/api/tags").status_code == 200


def test_streamed_generate_is_ndjson_with_final_metrics(http: httpx.Client) -> None:
    with http.stream("POST", "/api/generate", json={"model": MODEL, "prompt": "Hi",
                                                      "options": {"num_predict": 4}}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] in ("stop", "length")
    for key in ("total_duration", "load_duration", "prompt_eval_count", "eval_count", "context"):
        assert key in final, key
    assert all(set(chunk) >= {"model", "created_at", "response", "done"} for chunk in lines)
    assert final["created_at"].endswith("Z")


def test_unknown_routes_and_methods(http: httpx.Client) -> None:
    assert http.get("/api/nope").text == "404 page not found"
    wrong = http.get("/api/generate")
    assert wrong.status_code == 405 and wrong.text == "405 method not allowed"


@pytest.mark.parametrize("body, status, message", [
    (b"", 400, "missing request body"),
    (b"{not json", 400, "invalid JSON"),
    (b'{"model": "smollm2:135m", "prompt": 5}', 400, "prompt"),
    (b'{"model": "smollm2:135m", "prompt": "hi", "options": {"temperature": "hot"}}', 400,
     'option "temperature" must be of type float32'),
    (b'{"model": "smollm2:135m", "prompt": "hi", "options": {"stop": "x"}}', 400, 'option "stop" must be of type array'),
    (b'{"model": "smollm2:135m", "prompt": "hi", "keep_alive": "5"}', 400, 'time: missing unit in duration "5"'),
    (b'{"model": "smollm2:135m", "prompt": "hi", "raw": true, "system": "x"}', 400,
     "raw mode does not support template, system, or context"),
    (b'{"model": "smollm2:135m", "prompt": "hi", "top_logprobs": 21}', 400, "top_logprobs must be between 0 and 20"),
    (b'{"model": "smollm2:135m", "prompt": "hi", "think": true}', 400, 'does not support thinking'),
    (b'{"model": "smollm2:135m", "prompt": "hi", "images": ["aGVsbG8="]}', 400, "does not support images"),
    (b'{"model": "", "prompt": "hi"}', 404, "model '' not found"),
    (b'{"model": "no-such-model", "prompt": "hi"}', 404, "model 'no-such-model' not found"),
    (b'{"model": "../../etc/passwd", "prompt": "hi"}', 400, "invalid model name"),
])
def test_generate_bad_input(http: httpx.Client, body: bytes, status: int, message: str) -> None:
    response = http.post("/api/generate", content=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert message in response.json()["error"]


def test_chat_errors(http: httpx.Client) -> None:
    assert http.post("/api/chat", json={"messages": []}).json() == {"error": "model is required"}
    missing = http.post("/api/chat", json={"model": "ghost", "messages": [{"role": "user", "content": "x"}]})
    assert missing.status_code == 404 and missing.json()["error"] == "model 'ghost' not found"
    tools = http.post("/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                                          "tools": [{"type": "function", "function": {"name": "f"}}]})
    assert tools.status_code == 400 and "does not support tools" in tools.json()["error"]
    empty_tools = http.post("/api/chat", json={"model": MODEL, "stream": False, "tools": [],
                                                "messages": [{"role": "user", "content": "x"}],
                                                "options": {"num_predict": 2}})
    assert empty_tools.status_code == 200


def test_embed_errors(http: httpx.Client) -> None:
    assert http.post("/api/embed", json={"model": MODEL, "input": 5}).json()["error"] == "invalid input type"
    missing = http.post("/api/embed", json={"model": "ghost", "input": "x"})
    assert missing.status_code == 404
    assert missing.json()["error"] == 'model "ghost" not found, try pulling it first'
    empty = http.post("/api/embed", json={"model": MODEL, "input": []})
    assert empty.status_code == 200 and empty.json() == {"model": MODEL, "embeddings": []}


def test_show_copy_delete_errors(http: httpx.Client) -> None:
    assert http.post("/api/show", json={}).json() == {"error": "model is required"}
    missing = http.post("/api/show", json={"model": "llama3"})
    assert missing.status_code == 404 and missing.json()["error"] == "model 'llama3:latest' not found"
    assert http.post("/api/copy", json={"source": "ghost", "destination": "x"}).json() == \
        {"error": 'model "ghost" not found'}
    assert http.post("/api/copy", json={"source": MODEL, "destination": "a/../b"}).status_code == 400
    bad = http.request("DELETE", "/api/delete", json={"model": "ghost"})
    assert bad.status_code == 404 and bad.json() == {"error": "model 'ghost' not found"}
    invalid = http.request("DELETE", "/api/delete", json={"model": "../../etc/passwd"})
    assert invalid.status_code == 400


def test_model_names_are_case_insensitive(http: httpx.Client) -> None:
    shown = http.post("/api/show", json={"model": "SmolLM2:135M"})
    assert shown.status_code == 200


@pytest.mark.parametrize("digest", ["../x", "sha256:abc", "sha256:" + "a" * 65, "sha256:" + "g" * 64,
                                    "sha256%2F..%2F..%2Fetc", "md5:" + "a" * 32])
def test_blob_digest_must_be_sha256(http: httpx.Client, digest: str) -> None:
    assert http.head(f"/api/blobs/{digest}").status_code in (400, 404)
    response = http.post(f"/api/blobs/{digest}", content=b"data")
    assert response.status_code in (400, 404)
    if response.status_code == 400:
        assert response.json() == {"error": "invalid digest format"}


def test_blob_upload_is_verified_and_idempotent(http: httpx.Client, server) -> None:
    data = os.urandom(1024)
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.head(f"/api/blobs/{digest}").status_code == 404
    wrong = "sha256:" + "0" * 64
    mismatch = http.post(f"/api/blobs/{wrong}", content=data)
    assert mismatch.status_code == 400 and "digest mismatch" in mismatch.json()["error"]
    assert http.head(f"/api/blobs/{wrong}").status_code == 404
    assert http.post(f"/api/blobs/{digest}", content=data).status_code == 201
    assert http.head(f"/api/blobs/{digest}").status_code == 200
    assert http.post(f"/api/blobs/{digest}", content=data).status_code == 200
    blobs = server.models_dir() / "blobs"
    assert not [p for p in blobs.iterdir() if p.name.endswith(".tmp")]


def _upload(http: httpx.Client, data: bytes) -> str:
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.post(f"/api/blobs/{digest}", content=data).status_code in (200, 201)
    return digest


@pytest.mark.parametrize("payload", [b"not a gguf at all", b"GGUF", b"GGUF\x03\x00\x00\x00" + b"\xff" * 32])
def test_create_rejects_invalid_gguf_and_leaves_nothing(http: httpx.Client, payload: bytes) -> None:
    digest = _upload(http, payload)
    response = http.post("/api/create", json={"model": "broken", "files": {"m.gguf": digest}})
    assert response.status_code == 400
    assert "GGUF" in response.json()["error"]
    assert "broken:latest" not in {m["name"] for m in http.get("/api/tags").json()["models"]}
    assert http.get("/").status_code == 200


@pytest.mark.parametrize("body", [
    {"model": "x", "from": "/etc/passwd"},
    {"model": "x", "from": "/tmp/definitely-not-here"},
    {"model": "x", "files": {"../../etc/passwd": "sha256:" + "a" * 64}},
    {"model": "x", "files": {"/abs.gguf": "sha256:" + "a" * 64}},
    {"model": "x", "path": "/etc/passwd"},
])
def test_create_never_reads_server_paths(http: httpx.Client, body: dict) -> None:
    response = http.post("/api/create", json=body)
    assert response.status_code == 400, response.text
    assert "passwd" not in response.text and "definitely" not in response.text


def test_create_from_paths_give_identical_errors(http: httpx.Client) -> None:
    existing = http.post("/api/create", json={"model": "x", "from": "/etc/passwd"})
    absent = http.post("/api/create", json={"model": "x", "from": "/etc/nonexistent"})
    assert existing.content == absent.content


def test_create_errors(http: httpx.Client) -> None:
    assert http.post("/api/create", json={"model": "x"}).json() == \
        {"error": "neither 'from' or 'files' was specified"}
    assert http.post("/api/create", json={"model": "bad name!", "from": MODEL}).json() == \
        {"error": "invalid model name"}
    bad_template = http.post("/api/create", json={"model": "x", "from": MODEL, "template": "{{ .Prompt "})
    assert bad_template.status_code == 400 and "template error" in bad_template.json()["error"]
    assert http.post("/api/create", json={"model": "x", "from": "ghost"}).status_code == 404
    not_stream = http.post("/api/create", json={"model": "pirate", "from": MODEL, "system": "Arr.",
                                                "stream": False})
    assert not_stream.json() == {"status": "success"}
    assert http.request("DELETE", "/api/delete", json={"model": "pirate"}).status_code == 200


def test_host_header_guard(http: httpx.Client) -> None:
    assert http.get("/api/tags", headers={"Host": "rebind.attacker.test:11434"}).status_code == 403
    for host in ("localhost:11434", "127.0.0.1:11434", "[::1]:11434"):
        assert http.get("/api/tags", headers={"Host": host}).status_code == 200


def test_cross_origin_post_is_refused_before_the_handler(http: httpx.Client) -> None:
    http.post("/api/copy", json={"source": MODEL, "destination": "victim"})
    response = http.request("DELETE", "/api/delete", content=json.dumps({"model": "victim"}),
                            headers={"Origin": "https://evil.example", "Content-Type": "text/plain"})
    assert response.status_code == 403 and response.content == b""
    assert "victim:latest" in {m["name"] for m in http.get("/api/tags").json()["models"]}
    allowed = http.get("/api/tags", headers={"Origin": "http://localhost:3000"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    preflight = http.options("/api/chat", headers={"Origin": "http://localhost:3000",
                                                   "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert http.request("DELETE", "/api/delete", json={"model": "victim"}).status_code == 200


def test_request_id_is_returned(http: httpx.Client) -> None:
    response = http.get("/api/tags", headers={"X-Request-ID": "abc123"})
    assert response.headers["x-request-id"] == "abc123"


@pytest.mark.parametrize("extra", [{"format": "json"}, {"think": False}, {"logprobs": True, "top_logprobs": 2},
                                   {"tools": []}, {"options": {"mirostat": 1, "tfs_z": 1.0, "numa": True, "num_predict": 2}}])
def test_fields_of_later_issues_do_not_crash(http: httpx.Client, extra: dict) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False,
            "options": {"num_predict": 2}, **extra}
    response = http.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["done"] is True
