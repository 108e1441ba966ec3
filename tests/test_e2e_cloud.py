"""Cloud models end to end: a local corral that offloads to a hosted corral, both real, on loopback.

The hosted corral (CORRAL_AUTH_REQUIRED=1) holds the real smollm2:135m, and ``gpt-oss:120b`` made from it
(with a short num_predict), so the documentation's Cloud snippets run with only the host and key changed.
The local corral holds no weights: its CORRAL_CLOUD_URL is the hosted one, and its identity is the device
key ``corral signin`` bound there. The last test kills the hosted corral.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest

from corral_cli.bundled import BUNDLED
from corral_cli.supervisor import free_port
from serverproc import BIN, Server, cli_signin, spawn, start_server, stop_server

pytestmark = pytest.mark.e2e
DOCS_MODEL = "gpt-oss:120b"  # on the hosted corral: smollm2:135m answering at most 24 tokens
SKY = [{"role": "user", "content": "Why is the sky blue?"}]
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
LONG = {"type": "array", "items": {"type": "integer"}, "minItems": 300}  # a stream that cannot end early


def _last_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _create(srv: Server, name: str, modelfile: str, key: str | None = None) -> None:
    """``corral create NAME`` from a Modelfile's text (with an API key when the server wants one)."""
    path = srv.home.parent / f"{name.replace(':', '_')}.Modelfile"
    path.write_text(modelfile)
    env = {**srv.env, **({"OLLAMA_API_KEY": key} if key else {})}
    result = subprocess.run([str(BIN / "corral"), "create", name, "-f", str(path)], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr


def _smollm2_modelfile() -> str:
    return next(m for m in BUNDLED if m.name == "smollm2:135m").modelfile()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The hosted corral: keys required of everyone, smollm2:135m and the docs' model, an admin key in env."""
    srv = start_server(tmp_path_factory.mktemp("cloud"), {"CORRAL_AUTH_REQUIRED": "1"}, ready_status=401)
    try:
        admin = _last_line(srv.corral("admin", "bootstrap"))
        srv.env["CORRAL_TEST_ADMIN_KEY"] = admin
        _create(srv, "smollm2:135m", _smollm2_modelfile(), admin)
        _create(srv, DOCS_MODEL, "FROM smollm2:135m\nPARAMETER num_predict 24\n", admin)
        assert srv.corral("admin", "create-user", "alice").returncode == 0
        yield srv
    finally:
        stop_server(srv.process)


def _key(cloud: Server, *scopes: str, user: str = "alice") -> dict:
    """A new API key on the hosted corral (alice's unless said otherwise)."""
    answer = httpx.post(f"{cloud.url}/api/keys", json={"name": "test", "user": user, "scopes": list(scopes) or None},
                        headers={"Authorization": f"Bearer {cloud.env['CORRAL_TEST_ADMIN_KEY']}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def local(cloud: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The local corral, offloading to the hosted one, signed in there as alice with its device key."""
    srv = start_server(tmp_path_factory.mktemp("local"), {"CORRAL_CLOUD_URL": cloud.url,
                                                          "CORRAL_REMOTE_ALLOW_PRIVATE": "1"})
    try:
        cli_signin({**srv.env, "OLLAMA_HOST": cloud.host}, cloud.env["CORRAL_TEST_ADMIN_KEY"], "alice")
        yield srv
    finally:
        stop_server(srv.process)


def _snippet(code: str, host: str, api_key: str | None = None) -> subprocess.CompletedProcess:
    """Run a documentation snippet as a script, with only OLLAMA_HOST (and OLLAMA_API_KEY) set for it."""
    env = {k: v for k, v in os.environ.items() if k not in ("OLLAMA_HOST", "OLLAMA_API_KEY")}
    env.update({"OLLAMA_HOST": host, **({"OLLAMA_API_KEY": api_key} if api_key else {})})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=300)


def _curl(*args: str) -> dict:
    result = subprocess.run(["curl", "-sS", "--fail-with-body", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _gguf_blobs(srv: Server) -> list[Path]:
    """Every blob of the store that is a GGUF file (model weights)."""
    blobs = srv.models_dir() / "blobs"
    return [p for p in blobs.iterdir() if p.is_file() and p.open("rb").read(4) == b"GGUF"] if blobs.exists() else []


def test_pull_ls_show_and_run_of_a_cloud_model(local: Server) -> None:
    pulled = local.corral("pull", f"{DOCS_MODEL}-cloud")
    assert pulled.returncode == 0, pulled.stderr
    listed = local.corral("ls")
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith(f"{DOCS_MODEL}-cloud"))
    assert row[2] == "-"  # no size: nothing of it is here
    shown = local.corral("show", f"{DOCS_MODEL}-cloud")
    assert shown.returncode == 0, shown.stderr
    assert "Remote model" in shown.stdout and DOCS_MODEL in shown.stdout and local.env["CORRAL_CLOUD_URL"] in \
        shown.stdout
    ran = local.corral("run", f"{DOCS_MODEL}-cloud", "Say hi.")
    assert ran.returncode == 0 and ran.stdout.strip(), ran.stderr
    tags = httpx.get(f"{local.url}/api/tags", timeout=60).json()["models"]
    entry = next(m for m in tags if m["name"] == f"{DOCS_MODEL}-cloud")
    assert (entry["remote_model"], entry["remote_host"]) == (DOCS_MODEL, local.env["CORRAL_CLOUD_URL"])
    assert _gguf_blobs(local) == []
    removed = local.corral("rm", f"{DOCS_MODEL}-cloud")
    assert removed.returncode == 0 and "deleted" in removed.stdout, removed.stderr
    assert f"{DOCS_MODEL}-cloud" not in [m["name"] for m in httpx.get(f"{local.url}/api/tags", timeout=60)
                                         .json()["models"]]
    assert local.corral("show", f"{DOCS_MODEL}-cloud").returncode == 0  # the cloud still runs it


def test_docs_python_streaming_chat_runs_unchanged_through_the_local_corral(local: Server) -> None:
    result = _snippet("""
        from ollama import Client

        client = Client()

        messages = [
          {
            'role': 'user',
            'content': 'Why is the sky blue?',
          },
        ]

        for part in client.chat('gpt-oss:120b-cloud', messages=messages, stream=True):
          print(part['message']['content'], end='', flush=True)
        """, local.host)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr


JS_DIR = Path(__file__).resolve().parent / "js"


def _js_snippet(code: str, api_key: str | None = None) -> subprocess.CompletedProcess:
    """Run a documentation snippet with node and the ollama npm package that make install puts in tests/js."""
    if not (JS_DIR / "node_modules" / "ollama").is_dir():
        pytest.skip("the ollama npm package is not installed: run `npm ci --prefix tests/js` (make install does)")
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_API_KEY"}
    env.update({"OLLAMA_API_KEY": api_key} if api_key else {})
    return subprocess.run(["node", "--input-type=module", "-e", textwrap.dedent(code)], cwd=JS_DIR, env=env,
                          capture_output=True, text=True, timeout=300)


def test_docs_js_streaming_chat_runs_unchanged_through_the_local_corral(local: Server) -> None:
    result = _js_snippet("""
        import { Ollama } from "ollama";

        const ollama = new Ollama({ host: "http://HOST" });

        const response = await ollama.chat({
          model: "gpt-oss:120b-cloud",
          messages: [{ role: "user", content: "Explain quantum computing" }],
          stream: true,
        });

        for await (const part of response) {
          process.stdout.write(part.message.content);
        }
        """.replace("HOST", local.host))
    assert result.returncode == 0 and result.stdout.strip(), result.stderr


def test_docs_js_direct_api_access_with_a_key(cloud: Server) -> None:
    key = _key(cloud, "inference", "models:read")["key"]
    result = _js_snippet("""
        import { Ollama } from "ollama";

        const ollama = new Ollama({
          host: "http://HOST",
          headers: { Authorization: "Bearer " + process.env.OLLAMA_API_KEY },
        });

        const response = await ollama.chat({
          model: "gpt-oss:120b",
          messages: [{ role: "user", content: "Explain quantum computing" }],
          stream: true,
        });

        for await (const part of response) {
          process.stdout.write(part.message.content);
        }
        """.replace("HOST", cloud.host), key)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr


def test_docs_curl_non_streaming_through_the_local_corral(local: Server) -> None:
    answer = _curl(f"{local.url}/api/chat", "-d", json.dumps({
        "model": "gpt-oss:120b-cloud", "messages": [{"role": "user", "content": "Why is the sky blue?"}],
        "stream": False}))
    assert answer["done"] is True and answer["message"]["content"].strip()
    assert 0 < answer["eval_count"] <= 24


def test_docs_direct_api_access_with_a_key(cloud: Server) -> None:
    key = _key(cloud, "inference", "models:read")["key"]
    listed = _curl(f"{cloud.url}/api/tags", "-H", f"Authorization: Bearer {key}")
    assert DOCS_MODEL in [m["name"] for m in listed["models"]]
    assert httpx.get(f"{cloud.url}/api/tags", timeout=60).status_code == 401  # a key is required there
    result = _snippet("""
        import os
        from ollama import Client

        client = Client(
            host="http://HOST",
            headers={'Authorization': 'Bearer ' + os.environ.get('OLLAMA_API_KEY')}
        )

        messages = [
          {
            'role': 'user',
            'content': 'Why is the sky blue?',
          },
        ]

        for part in client.chat('gpt-oss:120b', messages=messages, stream=True):
          print(part['message']['content'], end='', flush=True)
        """.replace("HOST", cloud.host), cloud.host, key)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr
    answer = _curl(f"{cloud.url}/api/chat", "-H", f"Authorization: Bearer {key}", "-d", json.dumps({
        "model": DOCS_MODEL, "messages": [{"role": "user", "content": "Why is the sky blue?"}], "stream": False}))
    assert answer["message"]["content"].strip()


@pytest.fixture(scope="module")
def remote_model(local: Server, cloud: Server) -> str:
    """``mine``: a remote model record on the local corral for the hosted smollm2:135m."""
    created = local.corral("create", "mine", "--from", "smollm2:135m", "--remote-host", cloud.url)
    assert created.returncode == 0, created.stderr
    return "mine"


def test_openai_sdk_through_the_local_corral_to_a_remote_model(local: Server, remote_model: str) -> None:
    sdk = openai.OpenAI(base_url=f"{local.url}/v1", api_key="unused", max_retries=0)
    chunks = list(sdk.chat.completions.create(model=remote_model, messages=SKY, stream=True, max_tokens=16,
                                              temperature=0, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert chunks[-1].usage.completion_tokens > 0
    called = sdk.chat.completions.create(model=remote_model, messages=[{"role": "user", "content": "Weather in Paris?"}],
                                         tools=WEATHER, temperature=0, max_tokens=40,
                                         tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = called.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments), dict)
    schema = {"type": "object", "properties": {"color": {"type": "string", "enum": ["blue", "red"]}},
              "required": ["color"]}
    shaped = sdk.chat.completions.create(model=remote_model, messages=SKY, temperature=0, max_tokens=40,
                                         response_format={"type": "json_schema",
                                                          "json_schema": {"name": "sky", "schema": schema}})
    assert json.loads(shaped.choices[0].message.content)["color"] in ("blue", "red")
    assert _gguf_blobs(local) == []  # the local store holds no weights for it (nor any other)


def test_responses_completions_messages_and_embed_reach_the_remote_model(local: Server, remote_model: str) -> None:
    sdk = openai.OpenAI(base_url=f"{local.url}/v1", api_key="unused", max_retries=0)
    answered = sdk.responses.create(model=remote_model, input="Name three colors.", max_output_tokens=16,
                                    temperature=0)
    assert answered.output_text.strip()
    events = list(sdk.responses.create(model=remote_model, input="Name three colors.", max_output_tokens=8,
                                       temperature=0, stream=True))
    assert events[-1].type in ("response.completed", "response.incomplete")  # incomplete: max_output_tokens
    assert sdk.completions.create(model=remote_model, prompt="Once upon a time", max_tokens=8).choices[0].text
    claude = anthropic.Anthropic(base_url=local.url, api_key="unused", max_retries=0)
    message = claude.messages.create(model=remote_model, max_tokens=16, messages=[{"role": "user", "content": "Hi"}])
    assert message.content[0].text.strip()
    vectors = ollama.Client(host=local.url).embed(remote_model, ["hello", "world"]).embeddings
    assert len(vectors) == 2 and len(vectors[0]) > 0
    assert len(sdk.embeddings.create(model=remote_model, input="hello").data[0].embedding) == len(vectors[0])


def test_native_chunks_of_a_remote_model_name_it_and_its_host(local: Server, cloud: Server,
                                                              remote_model: str) -> None:
    client = ollama.Client(host=local.url)
    parts = list(client.generate(remote_model, "Hello", stream=True, options={"num_predict": 8}))
    assert parts[-1].done and "".join(p.response for p in parts).strip()
    raw = httpx.post(f"{local.url}/api/generate", json={"model": remote_model, "prompt": "Hi", "stream": False,
                                                        "options": {"num_predict": 4}}, timeout=120).json()
    assert (raw["model"], raw["remote_model"], raw["remote_host"]) == (remote_model, "smollm2:135m", cloud.url)
    assert httpx.post(f"{local.url}/api/show", json={"model": remote_model}, timeout=60).json()["remote_host"] == \
        cloud.url
    assert remote_model in [m["name"] for m in httpx.get(f"{local.url}/api/ps", timeout=60).json()["models"]]


def test_signed_out_identity_gets_the_what_to_do_message(local: Server, cloud: Server) -> None:
    out = subprocess.run([str(BIN / "corral"), "signout"], env={**local.env, "OLLAMA_HOST": cloud.host},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    try:
        with pytest.raises(ollama.ResponseError) as refused:
            ollama.Client(host=local.url).chat("gpt-oss:120b-cloud", messages=SKY)
        assert refused.value.status_code == 401
        assert "corral signin" in refused.value.error and "OLLAMA_API_KEY" in refused.value.error
        sdk = openai.OpenAI(base_url=f"{local.url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.AuthenticationError, match="corral signin"):
            sdk.chat.completions.create(model="gpt-oss:120b-cloud", messages=SKY)
    finally:
        cli_signin({**local.env, "OLLAMA_HOST": cloud.host}, cloud.env["CORRAL_TEST_ADMIN_KEY"], "alice")


def test_a_revoked_key_is_refused_by_the_cloud_and_the_local_user_told_what_to_do(cloud: Server, tmp_path) -> None:
    key = _key(cloud, "inference", "models:read")
    port = free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp_path / "models"),
           "CORRAL_HOME": str(tmp_path / "home"), "CORRAL_CLOUD_URL": cloud.url, "CORRAL_REMOTE_ALLOW_PRIVATE": "1",
           "OLLAMA_API_KEY": key["key"]}  # the key this corral shows the cloud
    url = f"http://127.0.0.1:{port}"
    process = spawn([str(BIN / "corral"), "serve"], env, tmp_path / "serve.log", f"{url}/api/tags")
    try:
        client = ollama.Client(host=url)
        assert client.chat("gpt-oss:120b-cloud", messages=SKY).message.content.strip()
        revoked = httpx.delete(f"{cloud.url}/api/keys/{key['id']}", timeout=60,
                               headers={"Authorization": f"Bearer {cloud.env['CORRAL_TEST_ADMIN_KEY']}"})
        assert revoked.status_code == 200
        with pytest.raises(ollama.ResponseError) as refused:
            client.chat("gpt-oss:120b-cloud", messages=SKY)
        assert refused.value.status_code == 401 and "refused the key in OLLAMA_API_KEY" in refused.value.error
    finally:
        stop_server(process)


def _inference_in_flight(cloud: Server) -> float:
    """Requests the hosted corral's inference service is answering now (its own /metrics scrape included)."""
    text = httpx.get(f"{cloud.url}/metrics", headers={"Authorization": f"Bearer {cloud.env['CORRAL_TEST_ADMIN_KEY']}"},
                     timeout=60).text
    line = next(line for line in text.splitlines()
                if line.startswith("corral_http_requests_in_flight{") and 'service="inference"' in line)
    return float(line.rsplit(" ", 1)[1])


def test_a_local_client_that_leaves_stops_the_generation_on_the_hosted_corral(local: Server, cloud: Server) -> None:
    endless = {"type": "array", "items": {"type": "string", "minLength": 20}, "minItems": 1000}  # minutes of output
    body = {"model": "smollm2:135m-cloud", "prompt": "Words:", "format": endless, "options": {"num_predict": 20000}}
    with httpx.stream("POST", f"{local.url}/api/generate", json=body, timeout=300) as answer:
        lines = answer.iter_lines()
        for _ in range(3):
            assert json.loads(next(lines))["done"] is False
        assert _inference_in_flight(cloud) >= 2  # the generation, and this scrape
    deadline = time.monotonic() + 15  # the generation itself would run for minutes
    while _inference_in_flight(cloud) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _inference_in_flight(cloud) <= 1


def _usage(cloud: Server, user: str = "alice") -> dict:
    answer = httpx.get(f"{cloud.url}/api/usage", params={"user": user},
                       headers={"Authorization": f"Bearer {cloud.env['CORRAL_TEST_ADMIN_KEY']}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["total"]


def _usage_after(cloud: Server, before: dict, requests: int) -> dict:
    """The usage added since ``before`` once ``requests`` more requests are counted (reports are asynchronous)."""
    deadline = time.monotonic() + 60
    while True:
        now = _usage(cloud)
        added = {k: now[k] - before[k] for k in now}
        if added["requests"] >= requests or time.monotonic() > deadline:
            return added
        time.sleep(0.2)


def test_usage_counts_match_the_tokens_the_clients_received(local: Server, cloud: Server,
                                                            remote_model: str) -> None:
    sdk = openai.OpenAI(base_url=f"{local.url}/v1", api_key="unused", max_retries=0)
    before = _usage(cloud)
    whole = sdk.chat.completions.create(model=remote_model, messages=SKY, max_tokens=8, temperature=0).usage
    streamed = list(sdk.chat.completions.create(model=remote_model, messages=SKY, max_tokens=6, stream=True,
                                                stream_options={"include_usage": True}))[-1].usage
    added = _usage_after(cloud, before, 2)
    assert added == {"requests": 2, "prompt_tokens": whole.prompt_tokens + streamed.prompt_tokens,
                     "completion_tokens": whole.completion_tokens + streamed.completion_tokens}
    before = _usage(cloud)
    parts = list(ollama.Client(host=local.url).chat("gpt-oss:120b-cloud", messages=SKY, stream=True))
    added = _usage_after(cloud, before, 1)
    assert added["requests"] == 1 and added["completion_tokens"] == parts[-1].eval_count > 0
    assert added["prompt_tokens"] >= parts[-1].prompt_eval_count  # the whole prompt, cached part included


def test_a_quota_exceeded_answers_429_with_retry_after_through_the_local_corral(local: Server,
                                                                                cloud: Server) -> None:
    admin = {"Authorization": f"Bearer {cloud.env['CORRAL_TEST_ADMIN_KEY']}"}
    assert httpx.put(f"{cloud.url}/api/quotas/alice", json={"requests_per_minute": 1}, headers=admin,
                     timeout=60).status_code == 200
    try:
        body = {"model": "gpt-oss:120b-cloud", "messages": SKY, "stream": False}
        assert httpx.post(f"{local.url}/api/chat", json=body, timeout=300).status_code == 200
        refused = httpx.post(f"{local.url}/api/chat", json=body, timeout=300)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "quota exceeded" in refused.json()["error"] and "1 requests per minute" in refused.json()["error"]
        sdk = openai.OpenAI(base_url=f"{local.url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.RateLimitError, match="requests per minute"):
            sdk.chat.completions.create(model="gpt-oss:120b-cloud", messages=SKY)
    finally:
        httpx.put(f"{cloud.url}/api/quotas/alice", json={}, headers=admin, timeout=60)


def test_hosted_corral_killed_mid_stream_ends_the_stream_cleanly(local: Server, cloud: Server) -> None:
    """Last: the hosted corral is gone afterwards."""
    _create(local, "localmodel", _smollm2_modelfile())
    received: list[str] = []
    failure: list[BaseException] = []

    def stream() -> None:
        try:
            for part in ollama.Client(host=local.url).generate("smollm2:135m-cloud", "Numbers:", stream=True,
                                                               format=LONG, options={"num_predict": 4000}):
                received.append(part.response)
        except BaseException as exc:  # the error line the test expects
            failure.append(exc)

    reader = threading.Thread(target=stream)
    reader.start()
    deadline = time.monotonic() + 180
    while len(received) < 3 and time.monotonic() < deadline and reader.is_alive():
        time.sleep(0.05)
    assert len(received) >= 3, failure
    os.killpg(cloud.process.pid, signal.SIGKILL)
    reader.join(60)
    assert not reader.is_alive()
    assert failure and isinstance(failure[0], ollama.ResponseError), failure
    assert "stopped answering" in str(failure[0])
    answer = ollama.Client(host=local.url).generate("localmodel", "Hi", options={"num_predict": 4})
    assert answer.done
    assert "localmodel:latest" in [m.model for m in ollama.Client(host=local.url).list().models]
