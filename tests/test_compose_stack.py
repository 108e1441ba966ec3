"""The compose stack built and brought up for real, used from the host as a remote client with an API key.

`make compose-test` runs this file after infra/docker/compose-test.sh has started dockerd (when it was not
running), built the local stand-ins for public images that cannot be pulled and built every corral image.
Under plain `make test` it runs where a Docker engine answers and the corral images are built, and skips
saying which is missing otherwise.

What it shows, in order (one stack, brought up once; each test continues from the last):
  up with health gating (every service healthy on /readyz, the gateway last) -> a key is required from
  other hosts -> create a model by blob upload -> chat streams, embed -> push to the stack's own registry
  (blobs in S3) -> delete, pull back -> web_fetch of a page another container serves -> a key without the
  scope is refused -> restart every container: models, keys and registry data are still there -> kill the
  inference container: it restarts and the next request succeeds -> down -v removes containers and volumes.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import ollama
import pytest

from corral_cli.bundled import BUNDLED, CHATML_TEMPLATE
from corral_cli.supervisor import free_port

ROOT = Path(__file__).resolve().parents[1]
FILES = (ROOT / "docker-compose.yml", ROOT / "tests" / "compose" / "pages.yml")
PROJECT = "corral-stack-test"
IMAGES = ("api", "auth", "websearch", "registry", "inference-cpu")
UP_TIMEOUT_S = 900
MODEL = "smol:latest"
PUSHED = "registry:11436/team/smol:v1"  # the stack's own registry, as the registry worker reaches it
OPTIONS = {"temperature": 0, "seed": 1, "num_predict": 12}
PAGE_TEXT = "The paddock gate is painted ochre"

pytestmark = [pytest.mark.compose_stack, pytest.mark.timeout(3600)]


def _run(*args: str, timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args[:4])} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-3000:]}")
    return done


def _engine_answers() -> bool:
    try:
        return _run("docker", "info", timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _missing_images(prefix: str, tag: str) -> list[str]:
    return [f"{prefix}/{name}:{tag}" for name in IMAGES
            if _run("docker", "image", "inspect", f"{prefix}/{name}:{tag}", check=False).returncode != 0]


def _base_images() -> dict[str, str]:
    """The public images, or the local stand-ins where they cannot be pulled (compose-test.sh chose already)."""
    chosen = os.environ.get("CORRAL_COMPOSE_IMAGES_ENV")
    text = Path(chosen).read_text() if chosen else _run(
        "bash", str(ROOT / "infra" / "docker" / "build-local-bases.sh"), timeout=1800).stdout
    return dict(line.split("=", 1) for line in text.split() if "=" in line)


@dataclass
class Stack:
    """The running project and what the tests learn along the way."""

    env: dict[str, str]
    url: str
    admin_key: str = ""
    keys: dict[str, str] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        files = [arg for path in FILES for arg in ("-f", str(path))]
        return _run("docker", "compose", "-p", PROJECT, "--project-directory", str(ROOT), *files,
                    "--env-file", os.devnull, *args, timeout=timeout, check=check, env=self.env, cwd=ROOT)

    def client(self, key: str | None = None) -> ollama.Client:
        key = self.admin_key if key is None else key
        return ollama.Client(host=self.url, headers={"Authorization": f"Bearer {key}"} if key else {},
                             timeout=600)

    def http(self, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
        key = self.admin_key if key is None else key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=600, trust_env=False, **kwargs)

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.split()[0]

    def inside_api(self, code: str) -> str:
        """Run Python in the gateway's container (on the stack's network, where the internal names resolve)."""
        return self.compose("exec", "-T", "api", "python", "-c", code, timeout=120).stdout

    def wait_healthy(self, timeout: float = UP_TIMEOUT_S) -> None:
        """Every container with a health check healthy, every other one running or done."""
        deadline = time.monotonic() + timeout
        states: dict = {}
        while time.monotonic() < deadline:
            states = {c["Service"]: (c["State"], c.get("Health", ""))
                      for line in self.compose("ps", "-a", "--format", "json").stdout.splitlines() if line.strip()
                      for c in ([json.loads(line)] if line.startswith("{") else json.loads(line))}
            if all(health == "healthy" or (not health and state in ("running", "exited"))
                   for state, health in states.values()):
                return
            time.sleep(3)
        raise AssertionError(f"not healthy within {timeout:.0f}s: {states}\n{self.logs()}")

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "30", check=False).stdout[-12000:]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if not _engine_answers():
        pytest.skip("no Docker engine answers: `make compose-test` starts one (infra/docker/ensure-dockerd.sh)")
    if _run("docker", "compose", "version", check=False).returncode != 0:
        pytest.skip("no `docker compose`: `make compose-plugin` installs it")
    prefix, tag = os.environ.get("CORRAL_IMAGE_PREFIX", "corral"), os.environ.get("CORRAL_IMAGE_TAG", "latest")
    missing = _missing_images(prefix, tag)
    if missing:
        pytest.skip(f"corral images not built ({', '.join(missing)}): `make compose-test` builds them")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_CONFIG", "DOCKER_HOST", "TMPDIR")}
    env.update(_base_images())
    env.update(CORRAL_IMAGE_PREFIX=prefix, CORRAL_IMAGE_TAG=tag, CORRAL_API_PORT=str(port),
               CORRAL_WEBFETCH_ALLOW="pages", POSTGRES_PASSWORD=secrets.token_hex(16),
               CORRAL_S3_ACCESS_KEY="corral-test", CORRAL_S3_SECRET_KEY=secrets.token_hex(16))
    stack = Stack(env, f"http://127.0.0.1:{port}")
    stack.compose("down", "-v", "--remove-orphans", check=False)  # what an interrupted run left behind
    try:
        up = stack.compose("up", "-d", "--no-build", "--pull", "never", "--wait", "--wait-timeout",
                           str(UP_TIMEOUT_S), timeout=UP_TIMEOUT_S + 60, check=False)
        assert up.returncode == 0, f"compose up failed:\n{up.stderr[-4000:]}\n{stack.logs()}"
        boot = stack.compose("exec", "-T", "auth", "python", "-m", "corral_auth", "bootstrap", timeout=120)
        stack.admin_key = boot.stdout.strip().splitlines()[-1]
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", timeout=300, check=False)


def _chat(client: ollama.Client, model: str) -> list:
    return list(client.chat(model=model, messages=[{"role": "user", "content": "Name a colour."}],
                            options=OPTIONS, stream=True))


def test_every_service_is_up_and_a_remote_client_needs_a_key(stack: Stack) -> None:
    ready = stack.http("GET", "/readyz", key="")
    assert ready.status_code == 200, ready.text
    assert stack.http("GET", "/api/tags", key="").status_code == 401
    assert stack.http("GET", "/api/tags").status_code == 200
    services = set(stack.compose("ps", "--services", "--status", "running").stdout.split())
    assert {"api", "inference", "registry", "registry-worker", "auth", "websearch", "websearch-worker",
            "postgres", "redis", "minio"} <= services


def test_create_by_blob_upload_then_chat_streams_and_embed(stack: Stack) -> None:
    client = stack.client()
    gguf = next(b for b in BUNDLED if b.name == "smollm2:135m").locate()
    digest = client.create_blob(gguf)
    done = client.create(model=MODEL, files={gguf.name: digest}, template=CHATML_TEMPLATE,
                         parameters={"stop": ["<|im_start|>", "<|im_end|>"]})
    assert done.status == "success"
    chunks = _chat(client, MODEL)
    assert len(chunks) > 2 and chunks[-1].done and not any(c.done for c in chunks[:-1])
    assert "".join(c.message.content for c in chunks).strip()
    vectors = client.embed(model=MODEL, input=["a red barn", "a blue sky"]).embeddings
    assert len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) > 0


def test_safetensors_import_converts_in_the_registry_container(stack: Stack, tmp_path: Path) -> None:
    """The registry image has the convert extra: all-MiniLM-L6-v2 uploaded as safetensors becomes a GGUF."""
    from corral_cli.bundled import all_minilm_dir
    from corral_cli.commands.create import model_files, request_file_names

    client = stack.client()
    names = request_file_names(model_files(all_minilm_dir(tmp_path / "bundled")))
    files = {name: client.create_blob(path) for path, name in names.items()}
    assert client.create("all-minilm", files=files).status == "success"
    assert client.show("all-minilm").details.format == "gguf"
    vectors = client.embed(model="all-minilm", input=["a red barn"]).embeddings
    assert len(vectors) == 1 and len(vectors[0]) == 384
    client.delete("all-minilm")


def test_push_to_the_stacks_registry_stores_blobs_in_s3_then_delete_and_pull_back(stack: Stack) -> None:
    client = stack.client()
    client.copy(MODEL, PUSHED)
    assert client.push(PUSHED, insecure=True).status == "success"
    stack.digests = {m.model: m.digest for m in client.list().models}
    manifest = json.loads(stack.inside_api(
        "import httpx; print(httpx.get('http://registry:11436/v2/team/smol/manifests/v1', "
        "headers={'Accept': 'application/vnd.docker.distribution.manifest.v2+json'}).text)"))
    layer = manifest["layers"][0]["digest"]
    location = stack.inside_api(
        f"import httpx; r = httpx.get('http://registry:11436/v2/team/smol/blobs/{layer}'); "
        "print(r.status_code, r.headers.get('location', ''))").split()
    assert location[0] == "307" and location[1].startswith("http://minio:9000/"), location  # served from S3
    client.delete(PUSHED)
    assert PUSHED not in {m.model for m in client.list().models}
    assert client.pull(PUSHED, insecure=True).status == "success"
    assert {m.model: m.digest for m in client.list().models}[PUSHED] == stack.digests[PUSHED]
    assert _chat(client, PUSHED)[-1].done


def test_web_fetch_reaches_a_page_served_by_another_container(stack: Stack) -> None:
    answer = stack.http("POST", "/api/web_fetch", json={"url": "http://pages/"})
    assert answer.status_code == 200, answer.text
    assert PAGE_TEXT in answer.json()["content"]


def test_a_key_with_too_little_scope_is_refused(stack: Stack) -> None:
    created = stack.http("POST", "/api/keys", json={"name": "reader", "scopes": ["models:read"]})
    assert created.status_code in (200, 201), created.text
    stack.keys["reader"] = reader = created.json()["key"]
    assert stack.http("GET", "/api/tags", key=reader).status_code == 200
    refused = stack.http("POST", "/api/chat", key=reader,
                         json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False})
    assert refused.status_code == 403 and "inference" in refused.json()["error"], refused.text


def test_restart_every_container_keeps_models_keys_and_registry_data(stack: Stack) -> None:
    stack.compose("restart", timeout=600)
    stack.wait_healthy()
    client = stack.client()
    assert {m.model: m.digest for m in client.list().models} == stack.digests
    reader = stack.keys["reader"]
    assert stack.http("GET", "/api/tags", key=reader).status_code == 200
    assert stack.http("POST", "/api/embed", key=reader, json={"model": MODEL, "input": "x"}).status_code == 403
    client.delete(PUSHED)  # pulled again from the registry: its manifests (PostgreSQL) and blobs (S3) survived
    assert client.pull(PUSHED, insecure=True).status == "success"
    assert {m.model: m.digest for m in client.list().models}[PUSHED] == stack.digests[PUSHED]


def test_a_killed_inference_container_restarts_and_the_next_request_succeeds(stack: Stack) -> None:
    container = stack.container("inference")
    inspect = ("docker", "inspect", "-f", "{{.State.Pid}} {{.RestartCount}}", container)
    pid, restarts = map(int, _run(*inspect).stdout.split())
    os.kill(pid, signal.SIGKILL)  # a crash, not `docker kill` (which counts as stopped by hand: no restart)
    deadline = time.monotonic() + 300
    while int(_run(*inspect).stdout.split()[1]) == restarts and time.monotonic() < deadline:
        time.sleep(1)
    stack.wait_healthy(timeout=300)
    assert int(_run(*inspect).stdout.split()[1]) == restarts + 1
    chunks = _chat(stack.client(), MODEL)
    assert chunks[-1].done and "".join(c.message.content for c in chunks).strip()


def _loaded_on(stack: Stack, container: str) -> set[str]:
    """The models one inference replica has loaded (its own /run/ps, asked inside its container)."""
    code = ("import json, urllib.request; print(json.dumps([m['name'] for m in json.load("
            "urllib.request.urlopen('http://127.0.0.1:11435/run/ps', timeout=10))['models']]))")
    return set(json.loads(_run("docker", "exec", container, "python", "-c", code).stdout))


def test_scale_out_to_two_inference_replicas_and_lose_one(stack: Stack) -> None:
    stack.compose("up", "-d", "--no-build", "--pull", "never", "--no-recreate", "--scale", "inference=2",
                  "--wait", "--wait-timeout", str(UP_TIMEOUT_S), timeout=UP_TIMEOUT_S + 60)
    replicas = stack.compose("ps", "-q", "inference").stdout.split()
    assert len(replicas) == 2
    client = stack.client()
    for _ in range(3):  # the gateway resolves `inference` to both and keeps sending the model where it is loaded
        assert _chat(client, MODEL)[-1].done
    holding = [r for r in replicas if MODEL in _loaded_on(stack, r)]
    assert len(holding) == 1, {r: _loaded_on(stack, r) for r in replicas}
    assert [m.model for m in client.ps().models].count(MODEL) == 1  # /api/ps across both replicas
    _run("docker", "stop", holding[0], timeout=120)
    try:
        assert _chat(client, MODEL)[-1].done  # the other replica takes it
    except ollama.ResponseError as exc:
        raise AssertionError(f"{exc}\n{stack.compose('logs', '--no-color', '--tail', '40', 'api').stdout}") from None
    survivor = next(r for r in replicas if r != holding[0])
    assert MODEL in _loaded_on(stack, survivor)


def test_cuda_and_rocm_targets_parse_and_select_their_vendor_images() -> None:
    """They cannot be built without NVIDIA's and AMD's images; with a version that exists nowhere, the build
    stops at resolving the vendor image the backend selected (not at the Dockerfile), and quickly."""
    if not _engine_answers():
        pytest.skip("no Docker engine answers: `make compose-test` starts one")
    for backend, arg, expected in (("cuda", "CUDA_VERSION", "nvidia/cuda:0.0.0-corral-check"),
                                   ("rocm", "ROCM_VERSION", "rocm/dev-ubuntu-24.04:0.0.0-corral-check")):
        done = _run(str(ROOT / "infra" / "docker" / "buildkit.sh"), "build", "-f", str(ROOT / "infra" / "docker" /
                    "Dockerfile"), "--target", "inference", "--build-arg", f"BACKEND={backend}", "--build-arg",
                    f"{arg}=0.0.0-corral-check", str(ROOT), timeout=300, check=False)
        output = done.stdout + done.stderr
        assert done.returncode != 0 and expected in output, output[-3000:]
        assert "dockerfile parse error" not in output.lower()


def test_down_removes_every_container_and_volume(stack: Stack) -> None:
    stack.compose("down", "-v", "--remove-orphans", timeout=300)
    label = f"label=com.docker.compose.project={PROJECT}"
    assert _run("docker", "ps", "-aq", "--filter", label).stdout.split() == []
    assert _run("docker", "volume", "ls", "-q", "--filter", label).stdout.split() == []
