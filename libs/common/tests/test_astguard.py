"""Threads that parse Python at once, as two threads formatting tracebacks do, never trip the interpreter's
shared AST recursion counter (python/cpython#106905 on 3.11 before 3.11.8)."""

from __future__ import annotations

import ast
import gc
import threading
import time
from pathlib import Path

import corral_common  # noqa: F401  (importing the package installs the guard)

SOURCE = Path(ast.__file__).read_text()


class _HandsOverTheGil:
    """Garbage whose finalizer, run by a collection in the middle of a parse, lets another thread in."""

    def __del__(self) -> None:
        time.sleep(0)


def _at_depth(depth: int, work) -> None:  # type: ignore[no-untyped-def]
    return work() if depth == 0 else _at_depth(depth - 1, work)


def test_threads_at_different_stack_depths_parse_at_once_without_a_system_error() -> None:
    errors: list[BaseException] = []

    def parse_repeatedly() -> None:
        for _ in range(15):
            for _ in range(300):
                junk = _HandsOverTheGil()
                junk.cycle = junk  # type: ignore[attr-defined]  (only the cycle collector frees it)
            ast.parse(SOURCE)

    def worker(depth: int) -> None:
        try:
            _at_depth(depth, parse_repeatedly)
        except SystemError as error:  # what an unguarded 3.11.7 raises here within a few runs
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(depth,)) for depth in (0, 30, 60, 90)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gc.collect()
    assert errors == []


def test_the_guard_keeps_what_ast_parse_returns_and_raises() -> None:
    assert isinstance(ast.parse("x = 1"), ast.Module)
    try:
        ast.parse("x = (")
    except SyntaxError as error:
        assert error.lineno == 1
    else:
        raise AssertionError("a syntax error must still be raised through the guard")
