"""Fixtures shared by the registry unit tests (helper functions live in corral_registry.testing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral_registry.store import ModelStore


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    """An empty model store in the test's own folder."""
    return ModelStore(tmp_path / "models")
