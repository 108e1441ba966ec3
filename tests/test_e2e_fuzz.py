"""Input validation (security.md, issue 18 item 8): random mutations of a valid request, sent to every route of a
real ``corral serve``, are answered with a 4xx that names the problem, never a bare 5xx.

The routes are read from the gateway's own route table (``create_app().routes``), so a new route is fuzzed as
soon as it exists, and ``test_fuzz_every_route_has_a_seed`` fails until it has a seed below. The mutations come
from ``random.Random(f"{seed}:{method} {path}")``: set CORRAL_FUZZ_SEED to replay a run (the seed and every
failing request are printed), CORRAL_FUZZ_MUTATIONS to send more per route.

A 5xx passes only when it reports a real dependency outage, with a message: a 503 saying a service is
unavailable, or a 502/504 from a route whose work is to reach a host outside corral (pull and push reach a
remote registry, web_fetch/web_search/index fetch pages). Those hosts failing is neither the caller's fault
(a 4xx would tell the client to change a request that was fine) nor a corral bug (a 500): it is what 502 Bad
Gateway means. Every error answer is JSON carrying a non-empty message in its API's error shape (Ollama's
``{"error": "..."}``, OpenAI's and Anthropic's error objects on /v1), except gin's plain "404 page not found"
and "405 method not allowed" for paths and methods no route has (Ollama's texts).
"""

from __future__ import annotations

import base64
import os
import random
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from hashlib import sha256

import httpx
import pytest

from mutations import Mutation, Seed, mutations
from serverproc import Server

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
FUZZ_SEED = int(os.environ.get("CORRAL_FUZZ_SEED", "18008"))
PER_ROUTE = int(os.environ.get("CORRAL_FUZZ_MUTATIONS", "30"))
BLOB = b"fuzz blob " + secrets.token_hex(8).encode()  # new to the store, whichever session runs the test
OUTBOUND = {"/api/pull", "/api/push", "/api/web_fetch", "/api/experimental/web_fetch", "/api/web_search",
            "/api/experimental/web_search", "/api/index"}
DEPENDENCY_DOWN = re.compile(r"unavailable|not running|stopped answering", re.IGNORECASE)
GIN_TEXTS = {404: "404 page not found", 405: "405 method not allowed"}
NUM_PREDICT = ("options", "num_predict")
MAX_TOKENS = (("max_tokens",),)
SHORT = {"num_predict": 2, "temperature": 0.5, "top_k": 20, "seed": 7, "stop": ["\n\n"]}
CHAT = [{"role": "user", "content": "Hi"}]
# Earlier turns with a tool call and its result, in each API's words, so mutations reach the translations.
NATIVE_TURNS = [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "add",
                                                                                   "arguments": {"a": 1}}}]},
                {"role": "tool", "content": "2", "tool_name": "add"}]
OPENAI_TURNS = [{"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "2"},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
RESPONSES_INPUT = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Add."}]},
                   {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Use add."}]},
                   {"type": "function_call", "call_id": "c1", "name": "add", "arguments": '{"a": 1}'},
                   {"type": "function_call_output", "call_id": "c1", "output": "2"},
                   {"role": "user", "content": "Hi"}]
ANTHROPIC_TURNS = [{"role": "user", "content": [{"type": "text", "text": "Add."}]},
                   {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "add",
                                                      "input": {"a": 1}}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "2"},
                                                {"type": "text", "text": "Hi"}]}]


def _public_key() -> str:
    """An ssh-ed25519 public key no device is bound to."""
    return "ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()


# One valid request per (method, path) of the gateway. Generations are capped at two tokens (``keep``: the cap
# is never dropped, only given values no server may accept), so valid-looking mutations answer quickly.
SEEDS: dict[tuple[str, str], Seed] = {
    ("GET", "/"): Seed(), ("HEAD", "/"): Seed(),
    ("GET", "/api/version"): Seed(), ("HEAD", "/api/version"): Seed(),
    ("GET", "/api/tags"): Seed(), ("HEAD", "/api/tags"): Seed(),
    ("GET", "/api/ps"): Seed(),
    ("POST", "/api/show"): Seed({"model": MODEL, "verbose": False, "system": "Be brief.",
                                 "options": {"temperature": 0.5}}),
    ("POST", "/api/generate"): Seed({"model": MODEL, "prompt": "Hi", "system": "Be brief.", "stream": False,
                                     "raw": False, "think": False, "keep_alive": "5m", "format": "",
                                     "template": "{{ .System }} {{ .Prompt }}", "context": [1, 2],
                                     "options": SHORT}, keep=(NUM_PREDICT,)),
    ("POST", "/api/chat"): Seed({"model": MODEL, "stream": False, "think": False, "keep_alive": 300,
                                 "messages": [{"role": "system", "content": "Be brief."}, *NATIVE_TURNS, *CHAT],
                                 "format": {"type": "object", "properties": {"a": {"type": "string"}}},
                                 "options": SHORT}, keep=(NUM_PREDICT,)),
    ("POST", "/api/embed"): Seed({"model": MODEL, "input": ["a", "b"], "truncate": True, "keep_alive": "5m",
                                  "dimensions": 8, "options": {"temperature": 0.5}}),
    ("POST", "/api/embeddings"): Seed({"model": MODEL, "prompt": "hi", "keep_alive": "5m"}),
    ("POST", "/api/create"): Seed({"model": "fuzz-made", "from": MODEL, "system": "Be brief.",
                                   "parameters": {"temperature": 0.5, "stop": ["x"]},
                                   "messages": CHAT, "stream": False}),
    ("POST", "/api/copy"): Seed({"source": MODEL, "destination": "fuzz-copy"}),
    ("DELETE", "/api/delete"): Seed({"model": "fuzz-copy"}),
    ("HEAD", "/api/blobs/{digest}"): Seed(params={"digest": "sha256:" + sha256(BLOB).hexdigest()}, expect=404),
    ("POST", "/api/blobs/{digest}"): Seed(BLOB, params={"digest": "sha256:" + sha256(BLOB).hexdigest()},
                                          expect=201),
    # No host outside this machine answers here: pull, push and fetch reach as far as their failing upstream.
    ("POST", "/api/pull"): Seed({"model": "example.invalid/fuzz/model:latest", "insecure": True, "stream": False},
                                expect=502),
    ("POST", "/api/push"): Seed({"model": MODEL, "insecure": False, "stream": False}, expect=502),
    ("POST", "/api/web_search"): Seed({"query": "sourdough bread", "max_results": 3}),
    ("POST", "/api/experimental/web_search"): Seed({"query": "sourdough bread", "max_results": 3}),
    ("POST", "/api/web_fetch"): Seed({"url": "https://example.invalid/page"}, expect=502),
    ("POST", "/api/experimental/web_fetch"): Seed({"url": "https://example.invalid/page"}, expect=502),
    ("POST", "/api/index"): Seed({"url": "https://example.invalid/", "crawl": False, "max_pages": 2,
                                  "max_depth": 1, "stream": False}, expect=502),
    ("POST", "/v1/chat/completions"): Seed({"model": MODEL, "messages": OPENAI_TURNS, "max_tokens": 2,
                                            "temperature": 0.5, "top_p": 0.9, "seed": 7, "n": 1, "stop": ["\n\n"],
                                            "stream": False, "response_format": {"type": "text"}}, keep=MAX_TOKENS),
    ("POST", "/v1/completions"): Seed({"model": MODEL, "prompt": ["Hi", "Yo"], "max_tokens": 2, "temperature": 0.5,
                                       "echo": False, "stop": "\n\n", "stream": False, "logprobs": 1},
                                      keep=MAX_TOKENS),
    ("GET", "/v1/models"): Seed(),
    ("GET", "/v1/models/{model:path}"): Seed(params={"model": MODEL}),
    ("POST", "/v1/embeddings"): Seed({"model": MODEL, "input": ["a", "b"], "encoding_format": "base64",
                                      "dimensions": 8}),
    ("POST", "/v1/responses"): Seed({"model": MODEL, "input": RESPONSES_INPUT, "instructions": "Be brief.",
                                     "max_output_tokens": 2, "temperature": 0.5, "stream": False,
                                     "text": {"format": {"type": "text"}}, "truncation": "auto",
                                     "metadata": {"k": "v"}}, keep=(("max_output_tokens",),)),
    ("POST", "/v1/messages"): Seed({"model": MODEL, "max_tokens": 2, "messages": ANTHROPIC_TURNS,
                                    "system": [{"type": "text", "text": "Be brief."}], "temperature": 0.5,
                                    "top_k": 20, "stop_sequences": ["\n\n"], "metadata": {"user_id": "u"}},
                                   keep=MAX_TOKENS),
    ("POST", "/v1/messages/count_tokens"): Seed({"model": MODEL, "messages": ANTHROPIC_TURNS,
                                                      "system": "Be brief."}),
    ("POST", "/api/keys"): Seed({"name": "fuzz", "scopes": ["inference"], "expires_at": "2099-01-01T00:00:00Z"},
                                admin=True),
    ("GET", "/api/keys"): Seed(query={"user": "admin"}, admin=True),
    ("DELETE", "/api/keys/{key_id}"): Seed(params={"key_id": "abcdef12"}, admin=True, expect=404),
    ("POST", "/api/grants"): Seed({"repository": "fuzz/model", "user": "admin", "actions": ["pull"]}, admin=True),
    ("GET", "/api/grants"): Seed(query={"repository": "fuzz/model"}, admin=True),
    ("DELETE", "/api/grants/{grant_id}"): Seed(params={"grant_id": "999999"}, admin=True, expect=404),
    ("POST", "/api/me"): Seed({}, admin=True),
    ("POST", "/api/signout"): Seed({"public_key": _public_key()}, admin=True, expect=404),
    ("POST", "/api/signin"): Seed({"name": "fuzz", "poll": False}, expect=400),  # unsigned
    ("POST", "/api/signin/approve"): Seed({"code": "ABCD-EFGH", "user": "admin", "scopes": ["inference"]},
                                          admin=True, expect=404),
    ("GET", "/api/usage"): Seed(query={"user": "fuzz", "hours": "24"}, admin=True),
    ("PUT", "/api/quotas/{user}"): Seed({"tokens_per_hour": 100_000, "requests_per_minute": 600},
                                        params={"user": "fuzz"}, admin=True),
    ("GET", "/token"): Seed(query={"service": "corral", "scope": "repository:fuzz/model:pull"}, admin=True),
    ("GET", "/.well-known/jwks.json"): Seed(),
    ("GET", "/healthz"): Seed(), ("GET", "/health"): Seed(), ("GET", "/readyz"): Seed(),
    ("GET", "/metrics"): Seed(),
}


def gateway_routes(env: dict[str, str]) -> list[tuple[str, str]]:
    """Every (method, path) the gateway built from env serves, in a stable order."""
    from fastapi.routing import iter_route_contexts

    from corral_api.auth import GatewayAuthSettings
    from corral_api.main import create_app
    from corral_api.settings import ApiSettings

    app = create_app(ApiSettings.from_env(env), GatewayAuthSettings.from_env(env))
    return sorted({(method, route.path) for route in iter_route_contexts(app.routes)  # included routers too
                   for method in getattr(route, "methods", None) or () if method != "OPTIONS"},
                  key=lambda r: (r[1], r[0]))


def test_fuzz_every_route_has_a_seed() -> None:
    routes = set(gateway_routes(dict(os.environ)))
    assert sorted(routes - set(SEEDS)) == [], "routes without a fuzz seed: add one to SEEDS"
    assert sorted(set(SEEDS) - routes) == [], "seeds of routes the gateway no longer has"


def error_message(path: str, response: httpx.Response) -> str:
    """The message of an error answer in its API's shape ('' when it has none)."""
    if response.text == GIN_TEXTS.get(response.status_code):
        return response.text
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if path.startswith("/v1/messages"):
        error = error.get("message") if isinstance(error, dict) and body.get("type") == "error" else None
    elif path.startswith("/v1/"):
        error = error.get("message") if isinstance(error, dict) else None
    return error.strip() if isinstance(error, str) else ""


def problem(method: str, path: str, response: httpx.Response) -> str | None:
    """Why an answer is wrong for bad input (None when it is fine)."""
    status = response.status_code
    if status < 400:
        return None
    if method == "HEAD":  # no body to carry a message
        return f"bare {status}" if status >= 500 else None
    message = error_message(path, response)
    if not message:
        return f"{status} without an error message in the API's shape"
    if status < 500:
        return None
    outage = (status == 503 and DEPENDENCY_DOWN.search(message)) or (status in (502, 504) and path in OUTBOUND)
    return None if outage else f"bare {status}"


def _send(http: httpx.Client, method: str, path: str, made: Mutation, admin: str | None) -> httpx.Response:
    headers = dict(made.headers)
    if admin:
        headers["authorization"] = f"Bearer {admin}"
    return http.request(method, made.url(path), content=made.content, headers=headers)


def _report(seed: int, method: str, path: str, index: int, made: Mutation, what: str) -> str:
    return (f"{method} {made.url(path)[:200]} [seed {seed}, mutation {index}: {made.op}] -> {what}\n"
            f"    sent {made.content[:300]!r} headers={made.headers}")


@pytest.fixture(scope="module")
def admin_key(server: Server) -> str | None:
    """An all-scopes key, so the key and signin routes are fuzzed past the credential check (and a user ``fuzz``
    whose quota they may change)."""
    result = server.corral("admin", "bootstrap")
    server.corral("admin", "create-user", "fuzz")
    return result.stdout.strip().splitlines()[-1] if result.returncode == 0 else None


@pytest.fixture(scope="module")
def tidy_store(server: Server) -> Iterator[None]:
    """Delete the models mutated create and copy requests made (other tests list the store)."""
    def names() -> set[str]:
        return {m["name"] for m in httpx.get(f"{server.url}/api/tags", timeout=60).json()["models"]}

    before = names()
    yield
    for name in names() - before:
        httpx.request("DELETE", f"{server.url}/api/delete", json={"model": name}, timeout=60)


def fuzz_route(http: httpx.Client, method: str, path: str, admin: str | None, seed: int, count: int,
               statuses: Counter[int]) -> list[str]:
    """Send a route's seed and ``count`` mutations of it; what was wrong with the answers."""
    start = SEEDS[(method, path)]
    failures = []
    for index, made in enumerate(mutations(start, random.Random(f"{seed}:{method} {path}"), count)):
        try:
            response = _send(http, method, path, made, admin if start.admin else None)
        except httpx.HTTPError as exc:
            failures.append(_report(seed, method, path, index, made, f"no answer: {exc!r}"))
            continue
        statuses[response.status_code] += 1
        why = problem(method, path, response)
        if index == 0 and response.status_code not in (start.expect, 429):  # 429: the admin key's rate limit
            why = f"the seed itself answered {response.status_code}, not {start.expect}"
        if why is not None:
            failures.append(_report(seed, method, path, index, made, f"{why}: {response.text[:300]!r}"))
    return failures


def test_fuzz_every_route_answers_mutated_input_with_a_4xx_naming_it(server: Server, admin_key: str | None,
                                                                       tidy_store: None) -> None:
    routes = gateway_routes(server.env)
    print(f"\nfuzz: seed {FUZZ_SEED} (CORRAL_FUZZ_SEED), {len(routes)} routes x (the seed + {PER_ROUTE} mutations) "
          f"= {len(routes) * (PER_ROUTE + 1)} requests; admin key: {'yes' if admin_key else 'no'}")
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=server.url, timeout=120, trust_env=False) as http:
        for method, path in routes:
            failures += fuzz_route(http, method, path, admin_key, FUZZ_SEED, PER_ROUTE, statuses)
        alive = http.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                 "options": {"num_predict": 2}})
    print(f"fuzz: statuses {dict(sorted(statuses.items()))}; {len(failures)} failures")
    print("\n".join(failures))
    assert alive.status_code == 200, alive.text
    assert not failures, f"{len(failures)} answers to mutated input were wrong (seed {FUZZ_SEED}):\n" + \
        "\n".join(failures[:40])
