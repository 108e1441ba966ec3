"""Scale-out of inference: one gateway, two inference nodes (real processes on loopback), one model store.

The gateway gets both nodes in CORRAL_INFERENCE_URL. A model goes to the node that has it loaded, else to
the least loaded node with room; a node that dies gets nothing more and its models load on the other.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import pytest

from corral_cli.bundled import import_bundled
from corral_cli.supervisor import free_port
from serverproc import BIN, spawn, stop_server

pytestmark = pytest.mark.e2e
SMOL, GEMMA = "smollm2:135m", "gemma3:270m"
OPTIONS = {"temperature": 0, "seed": 1, "num_predict": 4}


@dataclass
class Cluster:
    """The gateway's URL and each inference node's URL and process."""

    url: str
    nodes: dict[str, subprocess.Popen]

    def loaded(self, node: str) -> set[str]:
        """The models a node has loaded, by its own /run/ps."""
        rows = httpx.get(f"{node}/run/ps", timeout=30, trust_env=False).json()["models"]
        return {row["name"] for row in rows}


def _uvicorn(app: str, port: int, env: dict[str, str], log: Path, ready: str) -> subprocess.Popen:
    argv = [str(BIN / "uvicorn"), "--factory", app, "--host", "127.0.0.1", "--port", str(port)]
    return spawn(argv, env, log, f"http://127.0.0.1:{port}{ready}", timeout=120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("scaleout")
    env = {**os.environ, "OLLAMA_MODELS": str(tmp / "models"), "CORRAL_HOME": str(tmp / "home"),
           "CORRAL_REGISTRY_INLINE_WORKER": "1", "PYTHONUNBUFFERED": "1", "OLLAMA_KEEP_ALIVE": "10m"}
    processes: list[subprocess.Popen] = []
    try:
        registry = free_port()
        processes.append(_uvicorn("corral_registry.main:create_app", registry, env, tmp / "registry.log", "/healthz"))
        nodes = {}
        for name in ("a", "b"):
            port = free_port()
            nodes[f"http://127.0.0.1:{port}"] = _uvicorn("corral_inference.main:create_app", port, env,
                                                         tmp / f"inference-{name}.log", "/readyz")
        processes += nodes.values()
        gateway = free_port()
        gateway_env = {**env, "OLLAMA_HOST": f"127.0.0.1:{gateway}", "CORRAL_INFERENCE_URL": ",".join(nodes),
                       "CORRAL_REGISTRY_URL": f"http://127.0.0.1:{registry}",
                       "CORRAL_READYZ_SKIP": "auth,websearch"}  # not started: this test needs neither
        processes.append(_uvicorn("corral_api.main:create_app", gateway, gateway_env, tmp / "api.log", "/api/tags"))
        url = f"http://127.0.0.1:{gateway}"
        import_bundled(url, only=(SMOL, GEMMA))
        yield Cluster(url, nodes)
    finally:
        for process in processes:
            stop_server(process)


def _generate(cluster: Cluster, model: str) -> str:
    answer = ollama.Client(host=cluster.url, timeout=600).generate(model=model, prompt="Hi", options=OPTIONS)
    assert answer.done
    return answer.response


def test_each_model_runs_on_its_own_node_and_requests_follow_it(cluster: Cluster) -> None:
    first, second = cluster.nodes
    _generate(cluster, SMOL)
    holder = first if SMOL in cluster.loaded(first) else second
    other = second if holder == first else first
    assert cluster.loaded(holder) == {SMOL} and cluster.loaded(other) == set()
    _generate(cluster, GEMMA)  # the idle node is the least loaded one
    assert cluster.loaded(other) == {GEMMA}
    for _ in range(2):
        _generate(cluster, SMOL)
        _generate(cluster, GEMMA)
    assert cluster.loaded(holder) == {SMOL} and cluster.loaded(other) == {GEMMA}
    shown = {m.model for m in ollama.Client(host=cluster.url).ps().models}
    assert shown == {SMOL, GEMMA}  # /api/ps across the nodes


def test_a_killed_node_gets_no_more_requests_and_its_model_moves(cluster: Cluster) -> None:
    holder = next(node for node in cluster.nodes if SMOL in cluster.loaded(node))
    survivor = next(node for node in cluster.nodes if node != holder)
    cluster.nodes[holder].send_signal(signal.SIGKILL)
    cluster.nodes[holder].wait(timeout=30)
    assert _generate(cluster, SMOL)  # the first request after the kill already succeeds
    assert cluster.loaded(survivor) == {SMOL, GEMMA}
    _generate(cluster, GEMMA)
    assert {m.model for m in ollama.Client(host=cluster.url).ps().models} == {SMOL, GEMMA}
    assert httpx.get(f"{cluster.url}/readyz", timeout=30, trust_env=False).status_code == 200
