"""Fixtures of the websearch unit tests (helpers live in websearch_testkit, importable by tests)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from websearch_testkit import GuardedBackend, Site  # noqa: E402


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


@pytest.fixture
def canary() -> Iterator[Site]:
    """A listener on 127.0.0.1 that no refused fetch may ever reach."""
    s = Site()
    yield s
    s.close()
    assert s.connections == 0, f"the canary was reached {s.connections} times: {s.hits}"


@pytest.fixture(autouse=True)
def _reset_dialled() -> None:
    GuardedBackend.dialled = []

