"""Bounded work per request in inference (issue 18 items 1 and 11): grammars are bounded before they are built,
one llama.cpp cannot build is a 400 rather than a crash, and a prompt or embedding input far longer than the
context is never tokenized whole (security.md LCP-3)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral_common.errors import BadRequest

from corral_inference.completion import CUT_MARGIN, ContextOverflow, fit_context
from corral_inference.engine import LoadSpec
from corral_inference.structured import grammar_for
from corral_inference.testing import FakeEngine, run

CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def test_lcp3_dos_a_billion_min_items_is_refused_before_a_grammar_is_built() -> None:
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 1_000_000_000}
    started = time.monotonic()
    with pytest.raises(BadRequest, match="minItems is 1000000000 at #, over the limit of 1000"):
        grammar_for(schema)
    assert time.monotonic() - started < 30  # liveness only: the unbounded converter took minutes and 21 GB


def _fake(num_ctx: int = 256) -> FakeEngine:
    return FakeEngine(LoadSpec(model_path="x", num_ctx=num_ctx), script="ok")


def test_lcp3_dos_a_prompt_far_over_the_context_is_truncated_from_its_ends_only() -> None:
    engine, prompt = _fake(), "Once " + "upon a time, " * 200_000 + "the end."  # 2.6 MB, 256 tokens of context
    final = run(engine, prompt, num_predict=2).final
    full = [ord(c) for c in prompt]
    assert final.context[:255] == fit_context(full, 256, 4)  # what tokenizing it all and cutting gives
    assert final.truncated_tokens == pytest.approx(len(full) - 255, rel=0.01)
    assert engine.tokenized_bytes < (256 + 2 * CUT_MARGIN) * 4 * 2  # its two ends, never the middle


def test_lcp3_dos_with_truncate_false_such_a_prompt_is_refused_before_tokenizing() -> None:
    engine = _fake()
    outcome = run(engine, "x" * 20_000_000, truncate=False)
    assert isinstance(outcome.error, ContextOverflow)
    assert outcome.error.message == "the input length exceeds the context length"
    assert engine.tokenized_bytes == 0


def test_a_prompt_just_over_the_context_is_still_counted_exactly() -> None:
    final = run(_fake(num_ctx=8), "abcdefghijkl", num_keep=2).final
    assert final.truncated_tokens == 5 and final.context[:2] == [ord("a"), ord("b")]


@pytest.fixture(scope="module")
def batch(smollm2_path: Path) -> Iterator:
    batch_engine = pytest.importorskip("corral_inference.batch_engine")
    engine = batch_engine.BatchEngine(LoadSpec(model_path=str(smollm2_path), num_ctx=512, num_thread=2), 1)
    yield engine
    engine.close()


def test_lcp3_a_grammar_llama_cpp_cannot_build_is_a_400_not_a_crash(batch) -> None:
    """maxLength 2000 written out by the converter (the bound refuses it first) is one llama.cpp's parser gives
    up on; the null sampler it returned used to take the process down at the first token (SIGSEGV)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    grammar = json_schema_to_gbnf('{"type": "string", "maxLength": 2000}')
    outcome = run(batch, CHAT.format("Say a."), temperature=0, num_predict=4, grammar=grammar)
    assert isinstance(outcome.error, BadRequest) and "cannot build a grammar" in outcome.error.message
    assert run(batch, CHAT.format("Say a."), temperature=0, num_predict=2).final.done  # the engine lives on


def test_lcp3_dos_smollm2_reads_only_the_ends_of_a_huge_prompt(batch, monkeypatch) -> None:
    seen: list[int] = []
    tokenize = batch._tokenize

    def counting(data: bytes, add_bos: bool) -> list[int]:
        seen.append(len(data))
        return tokenize(data, add_bos)

    monkeypatch.setattr(batch, "_tokenize", counting)
    question = CHAT.format("Repeat the last word of this: " + "lorem ipsum dolor sit amet " * 80_000)  # 2 MB
    final = run(batch, question, temperature=0, num_predict=2).final
    kept = final.context[:len(final.context) - final.eval_count]
    assert final.done and final.truncated_tokens > 100_000 and len(kept) == 511
    assert kept[-3:] == tokenize(b"<|im_start|>assistant\n", False)[-3:]  # the prompt's end is there
    assert sum(seen) < 2 * (512 + 2 * CUT_MARGIN) * batch.piece_max
    refused = run(batch, question, truncate=False)
    assert isinstance(refused.error, ContextOverflow) and len(seen) == 2


def test_lcp3_dos_an_embedding_input_far_over_a_batch_is_cut_before_tokenizing(smollm2_path: Path) -> None:
    llama_engine = pytest.importorskip("corral_inference.llama_engine")
    engine = llama_engine.LlamaEngine(LoadSpec(model_path=str(smollm2_path), num_ctx=512, num_batch=512,
                                               num_thread=2, embedding=True))
    try:
        text = "lorem ipsum dolor sit amet " * 200_000  # 5.4 MB
        vectors, count = engine.embed([text], True)
        assert len(vectors) == 1 and count == 512
        with pytest.raises(BadRequest, match="the input length exceeds the context length"):
            engine.embed([text], False)
    finally:
        engine.close()


def test_dos_smollm2_loads_and_generates_under_a_memory_ceiling_that_stops_a_runaway(smollm2_path: Path) -> None:
    """RLIMIT_DATA leaves llama.cpp's read-only model mapping alone: serve's defaults (4 slots of 4096) fit in
    1 GiB, and an allocation past the ceiling fails in the process that made it, which goes on generating."""
    pytest.importorskip("corral_inference.batch_engine")
    script = textwrap.dedent(f"""
        from corral_common.memlimit import apply_memory_limit
        apply_memory_limit("corral_inference.main", {{"CORRAL_MEMORY_LIMIT": "1GiB"}})
        from corral_inference.batch_engine import BatchEngine
        from corral_inference.engine import LoadSpec
        from corral_inference.testing import run
        engine = BatchEngine(LoadSpec(model_path={str(smollm2_path)!r}, num_ctx=4096, num_thread=2), 4)
        ask = {CHAT.format("Hi")!r}
        print(run(engine, ask, temperature=0, num_predict=4).final.eval_count)
        try:
            bytearray(2 << 30)
        except MemoryError:
            print("refused")
        print(run(engine, ask, temperature=0, num_predict=4).final.eval_count)
        engine.close()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["4", "refused", "4"]
