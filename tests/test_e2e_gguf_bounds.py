"""GGUF metadata against a real ``corral serve`` (issue 18 items 3 and 8).

OLL-15: a model whose metadata holds a ten-million-element array (a 38 MiB GGUF) once grew the registry,
its worker and inference by 400-500 MiB each, kept by their parse caches. Now each service's RSS stays
within 64 MiB of where it was through create, show with and without verbose, and a generate.

LCP-2: a GGUF that llama.cpp would refuse at load (found before only at the first generate) is refused by
/api/create with a 400 that names the problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from corral_common.gguf import ARRAY, INT32, STRING
from corral_common.testing.ggufwriter import GGUF, gstr, runnable_model, u32, u64
from serverproc import Server, start_server, stop_server

MiB = 1024 * 1024
BOMB = 10_000_000
RSS_SLACK = 64 * MiB
SERVICES = ("api", "registry", "registry-worker", "inference")


def _bomb() -> bytes:
    """A model llama.cpp loads and runs, with a ten-million-element int32 array (38 MiB) in its metadata."""
    import numpy as np

    f = runnable_model()
    f.raw_kvs = gstr("general.bomb") + u32(ARRAY) + u32(INT32) + u64(BOMB) + np.arange(BOMB, dtype="<i4").tobytes()
    f.n_kv = len(f.kvs) + 1
    return f.build()


def _service_pids(server: Server) -> dict[str, int]:
    """The processes serving the API, the store, its worker and inference, as ``corral serve`` logged them."""
    pids: dict[str, int] = {}
    for line in (server.home.parent / "serve.log").read_text(errors="replace").splitlines():
        if '"service started"' in line:
            entry = json.loads(line)
            if entry.get("service") in SERVICES:
                pids[entry["service"]] = entry["pid"]  # the latest start of each
    assert set(pids) == set(SERVICES), pids
    return pids


def _rss(pids: dict[str, int]) -> dict[str, int]:
    """Resident memory of each service, in bytes."""
    out = {}
    for name, pid in pids.items():
        status = Path(f"/proc/{pid}/status").read_text()
        out[name] = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024
    return out


class _Watch:
    """Each service's RSS after each step, against where it stood before the bomb arrived."""

    def __init__(self, server: Server) -> None:
        self.pids = _service_pids(server)
        self.base = _rss(self.pids)
        self.seen: list[tuple[str, dict[str, int]]] = []

    def check(self, step: str) -> None:
        now = _rss(self.pids)
        self.seen.append((step, {name: (now[name] - self.base[name]) // MiB for name in now}))
        grown = {name: now[name] - self.base[name] for name in now if now[name] - self.base[name] > RSS_SLACK}
        assert not grown, f"after {step}, growth in MiB per step: {self.seen}"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A corral of its own: nothing else runs in its processes while their memory is measured."""
    srv = start_server(tmp_path_factory.mktemp("gguf-bounds"))
    try:
        yield srv
    finally:
        stop_server(srv.process)


def _use(client: ollama.Client, name: str, digest: str) -> None:
    """Create ``name`` from an uploaded GGUF, show it both ways and generate a few tokens with it."""
    assert client.create(model=name, files={"m.gguf": digest}, template="{{ .Prompt }}").status == "success"
    client.show(name)
    client.show(name)  # cached now
    answer = client.generate(model=name, prompt="hello world", options={"num_predict": 3, "seed": 1})
    assert answer.done


def test_oll15_metadata_bomb_leaves_every_service_within_64_mib(fresh: Server, tmp_path: Path) -> None:
    client, http = ollama.Client(host=fresh.url), httpx.Client(base_url=fresh.url, timeout=600, trust_env=False)
    twin, bomb = tmp_path / "twin.gguf", tmp_path / "bomb.gguf"
    twin.write_bytes(runnable_model().build())
    bomb.write_bytes(_bomb())
    assert bomb.stat().st_size > 38 * MiB
    _use(client, "twin", client.create_blob(twin))  # llama.cpp and every code path loaded once, without the bomb
    watch = _Watch(fresh)

    digest = client.create_blob(bomb)
    watch.check("upload")
    assert client.create(model="bomb", files={"m.gguf": digest}, template="{{ .Prompt }}").status == "success"
    watch.check("create")
    plain = http.post("/api/show", json={"model": "bomb"}).json()
    assert plain["model_info"]["general.bomb"] == [] and "model_info_truncated" not in plain
    watch.check("show")
    verbose = http.post("/api/show", json={"model": "bomb", "verbose": True}).json()
    assert verbose["model_info_truncated"] == {"general.bomb": BOMB}
    assert verbose["model_info"]["general.bomb"][:3] == [0, 1, 2] and len(verbose["model_info"]["general.bomb"]) < BOMB
    assert len(verbose["model_info"]["tokenizer.ggml.tokens"]) == 261  # what fits is shown whole
    del verbose
    watch.check("show verbose")
    answer = client.generate(model="bomb", prompt="hello world", options={"num_predict": 3, "seed": 1})
    assert answer.done
    watch.check("generate")
    for i in range(5):  # a show reads the file again each time: nothing may pile up (nor wait for the GC)
        http.post("/api/show", json={"model": "bomb", "verbose": i % 2 == 0})
        watch.check(f"show #{i + 2}")


# --- LCP-2: what llama.cpp refuses at load is refused at create ---------------------------------------

@pytest.mark.parametrize("model, reason", [
    (runnable_model().setting("general.architecture", STRING, "corralnope"), "unknown model architecture: 'corralnope'"),
    (runnable_model().setting("tokenizer.ggml.model", STRING, "nonesuch"), "unknown tokenizer: 'nonesuch'"),
    (runnable_model().without_tensor("blk.0.ffn_down.weight"), "tensor 'blk.0.ffn_down.weight' not found"),
], ids=["unknown architecture", "unknown tokenizer", "missing tensor"])
def test_lcp2_create_refuses_a_gguf_llama_cpp_would_reject_at_load(server: Server, tmp_path: Path,
                                                                   model: GGUF, reason: str) -> None:
    client = ollama.Client(host=server.url)
    path = tmp_path / "refused.gguf"
    path.write_bytes(model.build())
    digest = client.create_blob(path)
    answer = httpx.post(f"{server.url}/api/create", json={"model": "refused", "files": {"m.gguf": digest}},
                        timeout=600, trust_env=False)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith("llama.cpp cannot load this model: ")
    assert reason in answer.json()["error"]
    with pytest.raises(ollama.ResponseError) as info:
        client.create(model="refused", files={"m.gguf": digest})
    assert info.value.status_code == 400 and reason in info.value.error
    assert "refused:latest" not in {m.model for m in client.list().models}
