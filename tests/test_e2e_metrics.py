"""/metrics on a real ``corral serve``: the gateway's merged view moves by what real requests did.

Drives the session corral (smollm2:135m) with a generate, a streamed chat, an embed, a push to and a pull from
a ``corral registry`` on loopback, refused keys and a refused web_fetch, scraping before and after and parsing
with prometheus-client's own parser.
"""

from __future__ import annotations

import httpx
import ollama
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serverproc import Server
from test_e2e_registry import registry  # noqa: F401 - the module's own `corral registry` on loopback

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
OPTIONS = {"seed": 7, "temperature": 0, "num_predict": 8}
Samples = list[tuple[str, dict[str, str], float]]


def _scrape(url: str) -> tuple[str, Samples]:
    response = httpx.get(f"{url}/metrics", timeout=30, trust_env=False)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = [(s.name, s.labels, s.value) for f in text_string_to_metric_families(response.text) for s in f.samples]
    return response.text, samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of a series' samples whose labels include ``labels`` (0 when absent)."""
    return sum(v for n, got, v in samples if n == name and labels.items() <= got.items())


class Delta:
    """Differences between two scrapes."""

    def __init__(self, before: Samples, after: Samples) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return _value(self.after, name, **labels) - _value(self.before, name, **labels)


def _model_requests(client: ollama.Client) -> dict[str, int]:
    """A generate, a streamed chat and an embed; what the client was told about tokens."""
    generated = client.generate(model=MODEL, prompt="Name a colour.", options=OPTIONS)
    chunks = list(client.chat(model=MODEL, messages=[{"role": "user", "content": "Say hi."}], options=OPTIONS,
                              stream=True))
    final = chunks[-1]
    embedded = client.embed(model=MODEL, input="a sentence to embed")
    assert generated.eval_count and final.eval_count and embedded.prompt_eval_count
    return {"eval": generated.eval_count + final.eval_count,
            "prompt": generated.prompt_eval_count + final.prompt_eval_count + embedded.prompt_eval_count}


def _refusals(server: Server) -> None:
    """A remote caller (untrusted X-Forwarded-For) without a key, with a bogus key; a fetch of loopback."""
    remote = {"X-Forwarded-For": "203.0.113.9"}
    assert httpx.post(f"{server.url}/api/generate", json={"model": MODEL}, headers=remote).status_code == 401
    bogus = {**remote, "Authorization": "Bearer corral_bogus_key"}
    assert httpx.post(f"{server.url}/api/generate", json={"model": MODEL}, headers=bogus).status_code == 401
    fetched = httpx.post(f"{server.url}/api/web_fetch", json={"url": "http://127.0.0.1:9/"}, timeout=60)
    assert fetched.status_code == 403, fetched.text


def _transfers(client: ollama.Client, registry: str) -> int:
    """Push a copy of the model to the empty registry, pull it back; the layer bytes the push sent."""
    name = f"{registry}/metrics/assistant:v1"
    client.copy(MODEL, name)
    pushed = list(client.push(name, insecure=True, stream=True))
    assert pushed[-1].status == "success"
    client.delete(name)
    assert client.pull(name, insecure=True).status == "success"
    client.delete(name)
    return sum({p.digest: p.total for p in pushed if p.digest}.values())


def test_metrics_move_by_what_real_requests_did(server: Server, client: ollama.Client, registry: str) -> None:
    _, before = _scrape(server.url)
    _, registry_before = _scrape(f"http://{registry}")
    told = _model_requests(client)
    _refusals(server)
    pushed_bytes = _transfers(client, registry)
    text, after = _scrape(server.url)
    _, registry_after = _scrape(f"http://{registry}")
    delta = Delta(before, after)

    inference = {"service": "inference", "model": MODEL}
    assert delta("corral_inference_generated_tokens_total", **inference) == told["eval"]
    assert delta("corral_inference_prompt_tokens_total", **inference) == told["prompt"]
    assert delta("corral_inference_completions_total", **inference) == 2
    assert delta("corral_inference_time_to_first_token_seconds_count", **inference) == 2
    assert delta("corral_inference_time_per_output_token_seconds_count", **inference) == 2
    assert delta("corral_inference_time_to_first_token_seconds_sum", **inference) > 0
    assert _value(after, "corral_inference_loaded_models", service="inference") >= 1
    assert _value(after, "corral_inference_model_ram_bytes", **inference) > 0
    assert _value(after, "corral_inference_slots", **inference, mode="generate") >= 1
    assert _value(after, "corral_inference_kv_cache_used_cells", **inference, mode="generate") > 0

    for route in ("/api/generate", "/api/chat", "/api/embed"):
        assert delta("corral_http_requests_total", service="api", route=route, method="POST", status="200") == 1
        assert delta("corral_http_request_duration_seconds_count", service="api", route=route, method="POST") == 1
    assert delta("corral_http_requests_total", service="inference", route="/run/completion", status="200") == 2
    assert delta("corral_gateway_auth_failures_total", service="api", reason="missing_credential") == 1
    assert delta("corral_gateway_auth_failures_total", service="api", reason="invalid_credential") == 1

    assert delta("corral_websearch_fetches_total", service="websearch", outcome="refused") == 1
    assert delta("corral_websearch_fetch_refusals_total", service="websearch", reason="loopback") == 1

    for kind in ("push", "pull"):
        assert delta("corral_registry_jobs_total", service="registry", kind=kind, outcome="success") == 1
        assert delta("corral_registry_job_duration_seconds_count", service="registry", kind=kind) == 1
    assert _value(after, "corral_registry_jobs_in_progress", service="registry") == 0
    received = Delta(registry_before, registry_after)("corral_registry_blob_bytes_total", direction="in")
    assert pushed_bytes > 90_000_000 and received >= pushed_bytes

    for service in ("registry", "inference", "auth", "websearch"):
        assert _value(after, "corral_scrape_up", service=service) == 1
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))  # every family once


def test_metrics_on_the_public_port_need_an_admin_key_from_remote_callers(server: Server) -> None:
    remote = httpx.get(f"{server.url}/metrics", headers={"X-Forwarded-For": "203.0.113.9"}, trust_env=False)
    assert remote.status_code == 401
