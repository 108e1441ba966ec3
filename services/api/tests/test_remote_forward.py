"""Forwarding requests for remote models, against a fake upstream host on httpx.MockTransport."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.testclient import TestClient

from corral_common.identity import load_identity, public_blob
from corral_api.main import create_app
from corral_api.remote.client import RemoteClient
from corral_api.remote.runs import RemoteRuns
from corral_api.remote.settings import RemoteSettings
from corral_api.settings import ApiSettings
from corral_api.testing import FakeInference, FakeRegistry, model

CLOUD = "http://cloud.test:11434"


class Upstream:
    """A fake remote corral: records requests and answers with ``answer(request)``."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.answer(request)

    def body(self, index: int = -1) -> dict:
        return json.loads(self.requests[index].content)


def _ndjson(*chunks: dict) -> httpx.Response:
    return httpx.Response(200, content=b"".join(json.dumps(c).encode() + b"\n" for c in chunks),
                          headers={"content-type": "application/x-ndjson"})


def _gateway(upstream: Upstream, tmp_path: Path, host: str = CLOUD, **settings) -> TestClient:
    remote = RemoteSettings(**{"cloud_url": CLOUD, "allow_private": True, "identity": tmp_path / "id_ed25519",
                               **settings})
    app = create_app(ApiSettings.from_env({}), remote=remote)
    resolved = model(system="Be brief.", params={"temperature": 0.1}, model_digest="", remote_host=host,
                     remote_model="smollm2:135m")
    client = RemoteClient(remote)
    client.http = httpx.AsyncClient(transport=httpx.MockTransport(upstream.handle), follow_redirects=False)
    app.state.registry, app.state.remote, app.state.remote_runs = FakeRegistry(resolved), client, RemoteRuns()
    return TestClient(app, base_url="http://127.0.0.1:11434")


def test_chat_for_a_stored_remote_model_is_forwarded_with_the_record_applied(tmp_path) -> None:
    upstream = Upstream(lambda r: _ndjson({"model": "smollm2:135m", "message": {"content": "Hi"}, "done": False},
                                          {"model": "smollm2:135m", "message": {"content": ""}, "done": True}))
    gateway = _gateway(upstream, tmp_path)
    body = {"model": "m", "messages": [{"role": "user", "content": "hello", "images": ["aGk="]}],
            "tools": [{"type": "function", "function": {"name": "f"}}], "think": False, "format": "json",
            "options": {"seed": 1}, "keep_alive": "1m"}

    answer = gateway.post("/api/chat", json=body)

    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert [list(line)[:3] for line in lines] == [["model", "remote_model", "remote_host"]] * 2
    assert lines[0]["model"] == "m" and lines[0]["remote_host"] == CLOUD and lines[0]["message"]["content"] == "Hi"
    sent = upstream.body()
    assert sent["model"] == "smollm2:135m"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, body["messages"][0]]
    assert {k: sent[k] for k in ("tools", "think", "format", "keep_alive")} == \
        {k: body[k] for k in ("tools", "think", "format", "keep_alive")}
    assert sent["options"] == {"temperature": 0.1, "seed": 1}
    assert str(upstream.requests[0].url).startswith(f"{CLOUD}/api/chat")


def test_v1_stream_is_relayed_byte_for_byte_with_only_the_model_replaced(tmp_path) -> None:
    events = b'data: {"id":"c","choices":[{"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n'
    upstream = Upstream(lambda r: httpx.Response(200, content=events, headers={"content-type": "text/event-stream"}))
    gateway = _gateway(upstream, tmp_path)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}],
            "tool_choice": "required", "response_format": {"type": "json_object"}}

    answer = gateway.post("/v1/chat/completions", json=body)

    assert answer.status_code == 200 and answer.content == events
    assert upstream.body() == {**body, "model": "smollm2:135m"}
    assert upstream.requests[0].url.path == "/v1/chat/completions"


def test_the_signin_key_signs_requests_to_the_cloud(tmp_path) -> None:
    key = load_identity(tmp_path / "id_ed25519", create=True)
    upstream = Upstream(lambda r: httpx.Response(200, json={"embeddings": [[1.0]]}))
    _gateway(upstream, tmp_path).post("/api/embed", json={"model": "m", "input": "x"})

    request = upstream.requests[0]
    blob, signature = request.headers["authorization"].split(":")
    assert blob == public_blob(key)
    uri = request.url.raw_path.decode()
    assert "ts=" in uri and "nonce=" in uri and uri.startswith("/api/embed?")
    key.public_key().verify(base64.b64decode(signature), f"POST,{uri}".encode())


def test_the_api_key_goes_to_the_cloud_and_no_credential_to_another_host(tmp_path) -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json={"embeddings": []}))
    _gateway(upstream, tmp_path, api_key="olk_secret").post("/api/embed", json={"model": "m", "input": "x"})
    assert upstream.requests[-1].headers["authorization"] == "Bearer olk_secret"
    load_identity(tmp_path / "id_ed25519", create=True)
    other = _gateway(upstream, tmp_path, host="http://other.test:11434", api_key="olk_secret",
                     hosts=("other.test",))
    assert other.post("/api/embed", json={"model": "m", "input": "x"}).status_code == 200
    assert "authorization" not in upstream.requests[-1].headers


def test_a_401_from_the_cloud_says_what_to_do(tmp_path) -> None:
    upstream = Upstream(lambda r: httpx.Response(401, json={"error": "unauthorized"}))
    gateway = _gateway(upstream, tmp_path)

    native = gateway.post("/api/chat", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    v1 = gateway.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})

    assert native.status_code == 401 and "corral signin" in native.json()["error"]
    assert "OLLAMA_API_KEY" in native.json()["error"]
    assert v1.status_code == 401 and "corral signin" in v1.json()["error"]["message"]


def test_errors_and_retry_after_are_relayed(tmp_path) -> None:
    upstream = Upstream(lambda r: httpx.Response(429, json={"error": "quota exceeded: 10 requests per minute"},
                                                 headers={"retry-after": "42"}))
    answer = _gateway(upstream, tmp_path).post("/api/generate", json={"model": "m", "prompt": "x"})
    assert (answer.status_code, answer.headers["retry-after"]) == (429, "42")
    assert answer.json() == {"error": "quota exceeded: 10 requests per minute"}


def test_redirects_are_not_followed(tmp_path) -> None:
    upstream = Upstream(lambda r: httpx.Response(307, headers={"location": "http://evil.test/api/chat"}))
    answer = _gateway(upstream, tmp_path).post("/api/generate", json={"model": "m", "prompt": "x"})
    assert answer.status_code == 502 and "does not follow" in answer.json()["error"]
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(("host", "settings", "status", "words"), [
    ("http://elsewhere.test:11434", {}, 400, "this server cannot run this remote model"),
    (CLOUD, {"allow_private": False, "cloud_url": "http://127.0.0.1:9"}, 400, "CORRAL_REMOTE_HOSTS"),
    ("http://127.0.0.1:9", {"allow_private": False, "cloud_url": "http://127.0.0.1:9"}, 403,
     "CORRAL_REMOTE_ALLOW_PRIVATE"),
])
def test_hosts_outside_the_allow_list_or_private_are_refused(tmp_path, host, settings, status, words) -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json={}))
    answer = _gateway(upstream, tmp_path, host=host, **settings).post("/api/generate",
                                                                     json={"model": "m", "prompt": "x"})
    assert answer.status_code == status and words in answer.json()["error"]
    assert upstream.requests == []


class _Broken(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"model":"smollm2:135m","response":"Hel","done":false}\n'
        raise httpx.RemoteProtocolError("peer closed connection")


def test_a_host_that_dies_mid_stream_ends_it_with_an_error_line(tmp_path) -> None:
    upstream = Upstream(lambda r: httpx.Response(200, stream=_Broken(),
                                                 headers={"content-type": "application/x-ndjson"}))
    answer = _gateway(upstream, tmp_path).post("/api/generate", json={"model": "m", "prompt": "x"})
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert lines[0]["response"] == "Hel" and "stopped answering" in lines[-1]["error"]


def test_cloud_names_go_to_the_cloud_without_their_suffix(tmp_path) -> None:
    upstream = Upstream(lambda r: _ndjson({"model": "gpt-oss:20b", "response": "ok", "done": True}))
    answer = _gateway(upstream, tmp_path).post("/api/generate", json={"model": "gpt-oss:20b-cloud", "prompt": "x"})
    assert answer.status_code == 200 and upstream.body()["model"] == "gpt-oss:20b"
    assert json.loads(answer.text.splitlines()[0])["model"] == "gpt-oss:20b"  # relayed as the cloud sent it


def test_cloud_names_without_a_cloud_are_a_404_that_says_so(tmp_path) -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json={}))
    answer = _gateway(upstream, tmp_path, cloud_url="").post("/api/chat", json={"model": "glm-4.6:cloud"})
    assert answer.status_code == 404 and "CORRAL_CLOUD_URL" in answer.json()["error"]


def test_a_remote_model_in_use_is_in_ps_data(tmp_path) -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json={"model": "smollm2:135m", "response": "", "done": True}))
    gateway = _gateway(upstream, tmp_path)
    gateway.post("/api/generate", json={"model": "m", "prompt": "x", "stream": False})
    rows = gateway.app.state.remote_runs.rows()
    assert [(r["name"], r["remote_model"], r["size"]) for r in rows] == [("m", "smollm2:135m", 0)]


SHOWN = {"template": "{{ .Prompt }}", "details": {"family": "llama", "parameter_size": "135M",
                                                  "quantization_level": "Q8_0"},
         "model_info": {"general.architecture": "llama", "llama.context_length": 8192},
         "capabilities": ["completion", "tools"], "modified_at": "2025-01-01T00:00:00Z"}


class RecordingRegistry(FakeRegistry):
    """Records the create requests it gets and answers Ollama's progress."""

    def __init__(self, resolved) -> None:
        super().__init__(resolved)
        self.created: list = []

    async def create(self, req, request_id: str):
        from corral_common.internal import ProgressEvent

        self.created.append(req)
        for status in ("writing manifest", "success"):
            yield ProgressEvent(status=status)


def _cloud_gateway(upstream: Upstream, tmp_path: Path) -> TestClient:
    gateway = _gateway(upstream, tmp_path)
    gateway.app.state.registry = RecordingRegistry(gateway.app.state.registry.resolved)
    return gateway


def test_show_of_a_cloud_name_is_the_clouds_answer_marked_remote(tmp_path) -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json=SHOWN))
    answer = _cloud_gateway(upstream, tmp_path).post("/api/show", json={"model": "smollm2:135m-cloud",
                                                                        "verbose": True})
    assert upstream.body() == {"verbose": True, "model": "smollm2:135m"}
    shown = answer.json()
    assert list(shown).index("remote_model") == list(shown).index("model_info") - 2
    assert (shown["remote_model"], shown["remote_host"]) == ("smollm2:135m", CLOUD)


def test_pull_of_a_cloud_name_stores_a_record_of_what_the_cloud_said(tmp_path) -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json=SHOWN))
    gateway = _cloud_gateway(upstream, tmp_path)

    answer = gateway.post("/api/pull", json={"model": "smollm2:135m-cloud"})

    assert [json.loads(line)["status"] for line in answer.text.splitlines()] == [
        "pulling manifest", "writing manifest", "success"]
    created = gateway.app.state.registry.created[0]
    assert (created.model, created.from_, created.remote_host) == ("smollm2:135m-cloud", "smollm2:135m", CLOUD)
    assert created.info == {"capabilities": ["completion", "tools"], "model_family": "llama",
                            "parameter_size": "135M", "quantization_level": "Q8_0", "context_length": 8192}
    assert gateway.post("/api/pull", json={"model": "glm-4.6:cloud", "stream": False}).json() == \
        {"status": "success"}
    assert gateway.app.state.registry.created[1].model == "glm-4.6:cloud"


def test_pull_refused_by_the_cloud_keeps_its_status_and_says_what_to_do(tmp_path) -> None:
    upstream = Upstream(lambda r: httpx.Response(401, json={"error": "unauthorized"}))
    gateway = _cloud_gateway(upstream, tmp_path)
    answer = gateway.post("/api/pull", json={"model": "smollm2:135m-cloud"})
    assert answer.status_code == 401 and "corral signin" in answer.json()["error"]
    assert gateway.app.state.registry.created == []


def test_create_from_a_cloud_name_runs_it_on_the_cloud(tmp_path) -> None:
    seen = []

    async def create(req, request_id):
        from corral_common.internal import ProgressEvent

        seen.append(req)
        yield ProgressEvent(status="success")

    gateway = _cloud_gateway(Upstream(lambda r: httpx.Response(200, json={})), tmp_path)
    gateway.app.state.registry.create = create
    gateway.app.state.inference = FakeInference()
    assert gateway.post("/api/create", json={"model": "mine", "from": "gpt-oss:20b-cloud"}).status_code == 200
    assert (seen[0].from_, seen[0].remote_host) == ("gpt-oss:20b-cloud", CLOUD)


def test_a_local_model_is_resolved_once_per_request(tmp_path) -> None:
    gateway = _gateway(Upstream(lambda r: httpx.Response(500)), tmp_path)
    registry = gateway.app.state.registry
    registry.resolved = model()  # a local model this time
    asked: list[str] = []
    plain = registry.resolve

    async def counted(name: str, request_id: str):
        asked.append(name)
        return await plain(name, request_id)

    registry.resolve = counted
    gateway.app.state.inference = FakeInference()
    answer = gateway.post("/api/generate", json={"model": "m", "prompt": "x", "stream": False})
    assert answer.json()["response"] == "Hello" and asked == ["m"]
