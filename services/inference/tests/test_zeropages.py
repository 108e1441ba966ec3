"""A new context's zeroed KV cache is handed back to the kernel: out of RAM until written, its contents unchanged."""

from __future__ import annotations

import ctypes
import mmap
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral_inference import zeropages
from corral_inference.engine import LoadSpec
from corral_inference.testing import run
from corral_inference.zeropages import CHUNK, MIN_RUN, PAGE

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc/self/maps: Linux")


def test_only_addresses_that_were_not_mapped_before_count_as_new() -> None:
    before = [(0x1000, 0x5000, "rw-p", ""), (0x9000, 0xA000, "rw-p", "")]
    after = [(0x1000, 0x5000, "rw-p", ""),  # unchanged
             (0x5000, 0x8000, "rw-p", ""),  # new, next to an old one
             (0x8000, 0xB000, "rw-p", ""),  # merged with the old 0x9000 one: only its new parts
             (0xC000, 0xD000, "r--p", ""),  # not writable
             (0xD000, 0xE000, "rw-p", "/lib/x.so")]  # a file
    assert zeropages.new_private_ranges(before, after) == [(0x5000, 0x8000), (0x8000, 0x9000), (0xA000, 0xB000)]


def test_only_long_aligned_runs_of_zero_chunks_are_handed_back() -> None:
    base = 10 * MIN_RUN
    zero = set(range(base, base + MIN_RUN + 3 * CHUNK, CHUNK))  # one long run
    zero |= set(range(base + 2 * MIN_RUN, base + 2 * MIN_RUN + MIN_RUN - CHUNK, CHUNK))  # one chunk too short
    runs = list(zeropages.zero_runs((base - 100, base + 4 * MIN_RUN), lambda chunk: chunk in zero))
    assert runs == [(base, base + MIN_RUN + 3 * CHUNK)]
    # a run that reaches the end of the span stops at its last whole chunk
    tail = set(range(base, base + 2 * MIN_RUN, CHUNK))
    assert list(zeropages.zero_runs((base, base + 2 * MIN_RUN + CHUNK // 2), lambda c: c in tail)) == \
        [(base, base + 2 * MIN_RUN)]


@pytest.fixture
def region() -> Iterator[tuple[mmap.mmap, int]]:
    """A private anonymous mapping of 3 x MIN_RUN, every page written (in RAM), holding zeros but two bytes."""
    size = 3 * MIN_RUN
    area = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    area.write(b"\x00" * size)
    area[MIN_RUN + 5] = 7  # one chunk in the middle is not zero
    area[size - 1] = 9  # nor is the last one
    address = ctypes.addressof(ctypes.c_char.from_buffer(area))
    yield area, address
    area.close()


@linux_only
def test_zero_pages_leave_ram_and_read_back_as_the_same_bytes(region) -> None:
    area, address = region
    size = len(area)
    released = zeropages.release_zero_runs([(address, address + size)])
    # the first MIN_RUN of zeros is one run; the second stops before the last chunk, which holds the 9
    assert released.ranges == [(address, address + MIN_RUN), (address + MIN_RUN + CHUNK, address + size - CHUNK)]
    assert released.unbacked() == released.bytes == 3 * MIN_RUN - 2 * CHUNK
    area[0:PAGE] = b"\x01" * PAGE  # writing takes a page again
    assert released.unbacked() == released.bytes - PAGE
    assert area[0] == 1 and area[PAGE] == 0
    assert area[MIN_RUN + 5] == 7 and area[size - 1] == 9
    assert area[PAGE:MIN_RUN] == bytes(MIN_RUN - PAGE)  # what was handed back reads as the zeros it held


@linux_only
def test_a_context_made_inside_hands_back_only_the_zero_pages_it_mapped() -> None:
    before_area = mmap.mmap(-1, 2 * MIN_RUN, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    before_area.write(b"\x00" * len(before_area))  # zero and in RAM, but mapped before: left alone
    try:
        with zeropages.released_after(True) as released:
            inside = mmap.mmap(-1, 2 * MIN_RUN, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            inside.write(b"\x00" * len(inside))
        start = ctypes.addressof(ctypes.c_char.from_buffer(inside))
        assert any(s <= start + MIN_RUN < e for s, e in released.ranges)
        old = ctypes.addressof(ctypes.c_char.from_buffer(before_area))
        assert not any(s < old + len(before_area) and old < e for s, e in released.ranges)
        assert zeropages.Released([(old, old + len(before_area))]).unbacked() == 0
        inside.close()
    finally:
        before_area.close()
    with zeropages.released_after(False) as nothing:
        pass
    assert nothing.ranges == []


def test_a_scan_waits_for_running_llama_work_and_goes_before_work_that_comes_later() -> None:
    guard, order = zeropages.Guard(), []
    step_running, step_may_end = threading.Event(), threading.Event()

    def step(name: str, hold: threading.Event | None = None) -> None:
        with guard.shared():
            order.append(f"{name} start")
            if hold is not None:
                step_running.set()
                hold.wait(5)
            order.append(f"{name} end")

    def scan() -> None:
        with guard.exclusive():
            order.append("scan")

    first = threading.Thread(target=step, args=("step 1", step_may_end))
    first.start()
    step_running.wait(5)
    scanner = threading.Thread(target=scan)
    scanner.start()
    _wait_for(lambda: guard.writers_waiting == 1)
    later = threading.Thread(target=step, args=("step 2",))
    later.start()
    time.sleep(0.05)
    assert order == ["step 1 start"]  # the scan waits for step 1; step 2 waits behind the scan
    step_may_end.set()
    for thread in (first, scanner, later):
        thread.join(5)
    assert order == ["step 1 start", "step 1 end", "scan", "step 2 start", "step 2 end"]


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_the_gil_switch_interval_is_raised_for_a_scan_only() -> None:
    interval = sys.getswitchinterval()
    with zeropages._gil_kept():
        assert sys.getswitchinterval() == zeropages.SWITCH_INTERVAL_WHILE_SCANNING
    assert sys.getswitchinterval() == interval


@linux_only
def test_a_range_no_longer_mapped_is_left_alone() -> None:
    area = mmap.mmap(-1, 2 * MIN_RUN, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    address = ctypes.addressof(ctypes.c_char.from_buffer(area))
    area.close()  # unmapped: reading it would crash the process
    assert zeropages.release_zero_runs([(address, address + 2 * MIN_RUN)]).ranges == []


batch_engine = pytest.importorskip("corral_inference.batch_engine")


def _chat(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@linux_only
def test_a_loaded_models_cache_takes_ram_as_it_is_written_and_answers_the_same(smollm2_path: Path) -> None:
    """The KV cache (4 x 1024 cells here) is out of RAM after loading; generation answers exactly what a model whose
    cache stayed in RAM answers, and the pages it wrote are back in RAM."""
    spec = LoadSpec(model_path=str(smollm2_path), num_ctx=1024, num_thread=2)
    prompt = _chat("Name three rivers in Europe and one fact about each.")
    answers, engines = {}, {}
    for lazy in (True, False):
        engine = batch_engine.BatchEngine(spec, 4, lazy_kv=lazy)
        try:
            engines[lazy] = (engine.released.bytes, engine.unbacked_bytes())
            answers[lazy] = run(engine, prompt, temperature=0, num_predict=48).text
            engines[lazy] += (engine.unbacked_bytes(),)
        finally:
            engine.close()
    released, before, after = engines[True]
    kv = 4 * 1024 * 30 * 192 * 2 * 2  # cells x layers x (3 kv heads x 64) x K and V x f16
    assert released >= kv * 0.95 and before == released
    assert 0 < before - after < kv / 4  # the cells it wrote, not the whole cache
    assert engines[False] == (0, 0, 0)
    assert answers[True] == answers[False] and answers[True].strip()
