"""One ``ast.parse`` at a time per process, on the Pythons whose AST builder is not thread-safe.

CPython 3.11 before 3.11.8 and 3.12 before 3.12.2 keeps the AST builder's recursion counter in interpreter state: a thread
that starts parsing while another is part-way through resets it, and the first then fails with ``SystemError: AST
constructor recursion depth mismatch`` (python/cpython#106905, fixed by #113035). Python itself parses behind our backs: every
traceback formatted on 3.11 parses the failing line to place its ``^^^`` markers, so two threads logging an
exception at once were enough. Debian bookworm's 3.11.2, our images' Python, is affected.
"""

from __future__ import annotations

import ast
import functools
import sys
import threading

_AFFECTED = (3, 11) <= sys.version_info[:3] < (3, 11, 8) or (3, 12) <= sys.version_info[:3] < (3, 12, 2)
_LOCK = threading.RLock()


def install() -> None:
    """Make ``ast.parse`` take a process-wide lock where the interpreter needs one (idempotent)."""
    if not _AFFECTED or getattr(ast.parse, "_corral_guarded", False):
        return
    unguarded = ast.parse

    @functools.wraps(unguarded)
    def parse(*args, **kwargs):  # type: ignore[no-untyped-def]
        with _LOCK:
            return unguarded(*args, **kwargs)

    parse._corral_guarded = True  # type: ignore[attr-defined]
    ast.parse = parse  # type: ignore[assignment]
