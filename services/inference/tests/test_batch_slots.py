"""Which free slot a prompt gets: the one holding its prefix, else the least recently used one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral_inference.engine import LoadSpec
from corral_inference.testing import run

batch_engine = pytest.importorskip("corral_inference.batch_engine")
_Slot, pick_slot = batch_engine._Slot, batch_engine.pick_slot


def _slot(seq_id: int, kv: list[int], used: int) -> batch_engine._Slot:
    return _Slot(seq_id, kv=list(kv), used=used)


def test_a_prompt_goes_to_the_slot_holding_a_real_part_of_it() -> None:
    slots = [_slot(0, [1, 2, 3, 9, 9], 5), _slot(1, [1, 2, 3, 4, 5, 6], 1)]
    assert pick_slot(slots, [1, 2, 3, 4, 5, 6, 7, 8]).seq_id == 1


def test_a_prompt_sharing_only_a_header_goes_to_the_least_recently_used_slot() -> None:
    header = [1, 2]
    prompt = header + list(range(100, 140))  # 2 of 42 tokens shared: under a tenth
    slots = [_slot(0, header + [7] * 30, 3), _slot(1, header + [8] * 30, 2), _slot(2, [], 0)]
    assert pick_slot(slots, prompt).seq_id == 2  # the never used one
    assert pick_slot(slots[:2], prompt).seq_id == 1  # else the one used longest ago


def test_equal_prefixes_prefer_the_least_recently_used_slot() -> None:
    slots = [_slot(0, [1, 2, 3, 4], 9), _slot(1, [1, 2, 3, 4], 4)]
    assert pick_slot(slots, [1, 2, 3, 4, 5]).seq_id == 1


def _chat(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[batch_engine.BatchEngine]:
    engine = batch_engine.BatchEngine(LoadSpec(model_path=str(smollm2_path), num_ctx=1024, num_thread=2), 2)
    yield engine
    engine.close()


def test_two_conversations_taking_turns_each_keep_their_cached_history(engine) -> None:
    """Two chats with 2 slots, second turns after both first turns: each second turn evaluates only what is new."""
    # Long enough that the chat header both share is under a tenth of each.
    questions = {"a": "Tell me three facts about lighthouses and the people who kept them, in detail please. "
                      "I am writing a school report about old coasts, storms and ships, and the keepers' families.",
                 "b": "Describe how honey bees build their combs and why the cells have six sides, in detail. "
                      "My daughter keeps two hives in the garden and asked me yesterday, so simple words help."}
    firsts = {k: _chat(q) for k, q in questions.items()}
    answers = {k: run(engine, text, temperature=0, num_predict=16).text for k, text in firsts.items()}
    for key, text in firsts.items():
        second = text + answers[key] + "<|im_end|>\n" + _chat("And why does that matter?")
        final = run(engine, second, temperature=0, num_predict=2).final
        assert final.prompt_eval_count < len(engine.tokenize(second)) - len(engine.tokenize(text)) + 8, key


def test_a_batch_loop_that_dies_fails_its_requests_instead_of_leaving_them_waiting(smollm2_path: Path,
                                                                                     monkeypatch) -> None:
    """A bug outside one request's step ends the loop's thread: the running request, and every request submitted
    after, end at once with an error that says what happened (before, each waited out the gateway's timeout)."""
    engine = batch_engine.BatchEngine(LoadSpec(model_path=str(smollm2_path), num_ctx=512, num_thread=2), 1)
    try:
        steps = 0
        real_drop = engine._drop_cancelled

        def failing_drop() -> None:
            nonlocal steps
            steps += 1
            if steps == 3:
                raise SystemExit("injected")  # not an Exception: the per-step handler does not catch it
            real_drop()

        monkeypatch.setattr(engine, "_drop_cancelled", failing_drop)
        running = run(engine, _chat("Count from one to a hundred."), temperature=0, num_predict=200, timeout=30)
        assert running.error is not None and "batch loop stopped" in running.error.message
        engine.thread.join(10)
        assert not engine.thread.is_alive()
        later = run(engine, _chat("hi"), temperature=0, num_predict=4, timeout=5)
        assert later.error is not None and "unload the model or restart corral" in later.error.message
    finally:
        engine.close()
