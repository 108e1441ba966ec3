"""Fixtures of the websearch unit tests (helpers live in corral_websearch.testing)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral_websearch.testing import GuardedBackend, Site


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

