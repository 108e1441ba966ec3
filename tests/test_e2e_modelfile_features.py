"""Modelfile and server features on the real model (issue 16): every sampler the documentation lists, the KV
cache type and flash attention settings, gpt-oss (harmony) output, and pulls through an HTTPS proxy."""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from corral_registry.testing import FakeRegistry

from serverproc import Server, start_server, stop_server

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
PROMPT = "Write a short story about a lighthouse keeper."


def _generate(server, options: dict, model: str = MODEL) -> str:
    body = {"model": model, "prompt": PROMPT, "stream": False,
            "options": {"num_predict": 40, "temperature": 1.0, "seed": 11, **options}}
    response = httpx.post(f"{server.url}/api/generate", json=body, timeout=300, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()["response"]


# --- item 4: mirostat ----------------------------------------------------------------------------
@pytest.mark.parametrize("version", [1, 2])
def test_mirostat_changes_sampling_and_is_deterministic_with_a_seed(server, version: int) -> None:
    mirostat = {"mirostat": version, "mirostat_tau": 0.5, "mirostat_eta": 0.1}
    default = _generate(server, {})
    first, again = _generate(server, mirostat), _generate(server, mirostat)
    assert first == again
    assert first != default


def test_mirostat_from_the_modelfile_is_applied(server) -> None:
    created = httpx.post(f"{server.url}/api/create", timeout=300, trust_env=False, json={
        "model": "smol-mirostat", "from": MODEL, "stream": False,
        "parameters": {"mirostat": 2, "mirostat_tau": 0.5, "mirostat_eta": 0.1}})
    assert created.status_code == 200, created.text
    shown = httpx.post(f"{server.url}/api/show", json={"model": "smol-mirostat"}, trust_env=False).json()
    assert "mirostat" in shown["parameters"] and "mirostat_tau" in shown["parameters"]
    assert _generate(server, {}, model="smol-mirostat") == _generate(
        server, {"mirostat": 2, "mirostat_tau": 0.5, "mirostat_eta": 0.1})
    assert _generate(server, {}, model="smol-mirostat") != _generate(server, {})


# --- item 3: OLLAMA_KV_CACHE_TYPE ----------------------------------------------------------------
@pytest.fixture(scope="module")
def q8_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second corral whose KV cache is q8_0 (flash attention left to llama.cpp)."""
    srv = start_server(tmp_path_factory.mktemp("corral-q8"), {"OLLAMA_KV_CACHE_TYPE": "q8_0"})
    try:
        from corral_cli.bundled import import_bundled

        import_bundled(srv.url, only=(MODEL,))
        yield srv
    finally:
        stop_server(srv.process)


def _loaded_size(srv: Server) -> tuple[int, str]:
    """Load smollm2 afresh with a 1024-token context, generate at temperature 0; its /api/ps size and the text."""
    httpx.post(f"{srv.url}/api/generate", json={"model": MODEL, "keep_alive": 0}, timeout=120, trust_env=False)
    text = _generate(srv, {"num_ctx": 1024, "temperature": 0, "num_predict": 12})
    rows = httpx.get(f"{srv.url}/api/ps", trust_env=False).json()["models"]
    return next(row["size"] for row in rows if row["name"] == MODEL), text


def test_a_q8_0_kv_cache_holds_fewer_bytes_in_ps_and_still_answers(server, q8_server) -> None:
    info = httpx.post(f"{server.url}/api/show", json={"model": MODEL}, trust_env=False).json()["model_info"]
    layers, heads = info["llama.block_count"], info["llama.attention.head_count"]
    kv_width = info["llama.attention.head_count_kv"] * info["llama.embedding_length"] // heads
    cells = 1024 * 4  # num_ctx × OLLAMA_NUM_PARALLEL's default 4 slots
    f16_size, f16_text = _loaded_size(server)
    q8_size, q8_text = _loaded_size(q8_server)
    f16_kv, q8_kv = layers * cells * 2 * kv_width * 2, layers * cells * 2 * kv_width // 32 * 34
    assert f16_size - q8_size == f16_kv - q8_kv
    assert q8_text.strip() and f16_text.strip()


# --- item 6: HTTPS_PROXY ---------------------------------------------------------------------------
PROXIED_HOST = "registry.invalid"  # a name no resolver knows (RFC 2606): only the proxy below maps it


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA (the file SSL_CERT_FILE names) and a certificate and key it signed for PROXIED_HOST."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def cert(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                            critical=True)
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(PROXIED_HOST)]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    paths = folder / "ca.pem", folder / "registry.pem", folder / "registry.key"
    paths[0].write_bytes(cert("test CA", ca_key, "test CA", ca_key, True).public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert(PROXIED_HOST, key, "test CA", ca_key, False).public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class ConnectProxy:
    """An HTTP CONNECT proxy on 127.0.0.1 that resolves names from its own table (as a corporate proxy resolves
    what the machine behind it cannot) and tunnels bytes; it records every CONNECT target."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names, self.targets = names, []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> "ConnectProxy":
        self.thread.start()
        started = asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.server = asyncio.run_coroutine_threadsafe(started, self.loop).result(10)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        self.targets.append(target)
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or host not in self.names:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(self.names[host], int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeRegistry, Path]]:
    """A registry on 127.0.0.1 speaking TLS as PROXIED_HOST, holding library/m:tag; and the CA that signed it."""
    ca, certificate, key = _tls_files(tmp_path_factory.mktemp("tls"))
    registry = FakeRegistry()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    registry.server.socket = context.wrap_socket(registry.server.socket, server_side=True)
    registry.add_model("library/m", "tag", [b"proxied weights " * 1000])
    registry.start()
    try:
        yield registry, ca
    finally:
        registry.stop()


def test_a_pull_through_https_proxy_lets_the_proxy_resolve_the_registry(server, tls_registry,
                                                                         tmp_path_factory) -> None:
    registry, ca = tls_registry
    name = f"{PROXIED_HOST}:{registry.server.server_address[1]}/library/m:tag"
    with pytest.raises(ollama.ResponseError, match=f"cannot resolve registry host {PROXIED_HOST}"):
        ollama.Client(host=server.url).pull(name)  # no proxy: the name resolves nowhere
    proxy = ConnectProxy({PROXIED_HOST: "127.0.0.1"}).start()
    proxied = start_server(tmp_path_factory.mktemp("corral-proxied"),
                           {"HTTPS_PROXY": proxy.url, "NO_PROXY": "", "SSL_CERT_FILE": str(ca)})
    try:
        client = ollama.Client(host=proxied.url)
        assert client.pull(name).status == "success"
        assert name in [m.model for m in client.list().models]
        assert proxy.targets and set(proxy.targets) == {name.split("/", 1)[0]}  # every request went through it
        assert registry.requests("GET", "/manifests/tag")
    finally:
        stop_server(proxied.process)
        proxy.stop()


# --- item 5: harmony (gpt-oss) output ------------------------------------------------------------
_SHOTS = [("What is 2+2?", "I add two and two, which makes four.", "4"),
          ("What color is the sky?", "On a clear day the sky looks blue.", "Blue"),
          ("What is the capital of France?", "France's capital city is Paris.", "Paris")]
# Few-shot harmony conversations teach smollm2 the format; the prompt then opens an assistant message, as the
# gpt-oss template does, and the model writes its channels itself (as text: smollm2 has no such tokens).
HARMONY_TEMPLATE = ("<|start|>system<|message|>You are a helpful assistant.<|end|>\n" + "".join(
    f"<|start|>user<|message|>{q}<|end|><|start|>assistant<|channel|>analysis<|message|>{a}<|end|>"
    f"<|start|>assistant<|channel|>final<|message|>{f}<|return|>\n" for q, a, f in _SHOTS)
    + "{{ range .Messages }}<|start|>{{ .Role }}<|message|>{{ .Content }}<|end|>{{ end }}<|start|>assistant")


@pytest.fixture(scope="module")
def harmony_model(server) -> Iterator[str]:
    created = httpx.post(f"{server.url}/api/create", timeout=300, trust_env=False, json={
        "model": "smol-harmony", "from": MODEL, "template": HARMONY_TEMPLATE, "stream": False,
        "parameters": {"stop": ["<|return|>"], "temperature": 0, "num_predict": 48}})
    assert created.status_code == 200, created.text
    yield "smol-harmony"
    # It shares smollm2's weights, so its runner would answer (and be listed in /api/ps) for smollm2 in the
    # session's later tests: unload and remove it.
    httpx.post(f"{server.url}/api/generate", json={"model": "smol-harmony", "keep_alive": 0}, timeout=120,
               trust_env=False)
    httpx.request("DELETE", f"{server.url}/api/delete", json={"model": "smol-harmony"}, timeout=60, trust_env=False)


def test_harmony_channels_become_thinking_and_content(server, harmony_model: str) -> None:
    body = {"model": harmony_model, "messages": [{"role": "user", "content": "Name a fruit."}]}
    whole = httpx.post(f"{server.url}/api/chat", json={**body, "stream": False}, timeout=300, trust_env=False)
    assert whole.status_code == 200, whole.text
    message = whole.json()["message"]
    assert message["thinking"].strip() and message["content"].strip()
    assert "<|" not in message["thinking"] + message["content"]  # no framing left in either field
    with httpx.stream("POST", f"{server.url}/api/chat", json=body, timeout=300, trust_env=False) as response:
        chunks = [json.loads(line) for line in response.iter_lines() if line]
    thinking_chunks = [c["message"]["thinking"] for c in chunks if c["message"].get("thinking")]
    assert len(thinking_chunks) > 1  # reasoning streams as it is written, not all at the end
    assert "".join(thinking_chunks) == message["thinking"]
    assert "".join(c["message"]["content"] for c in chunks) == message["content"]
    assert ollama.Client(host=server.url).show(harmony_model).capabilities == ["completion", "thinking"]
    without = httpx.post(f"{server.url}/api/chat", json={**body, "stream": False, "think": False}, timeout=300,
                         trust_env=False).json()["message"]
    assert "thinking" not in without and without["content"] == message["content"]
