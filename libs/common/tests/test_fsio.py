"""Crash-safe writes: readers see the old or the new file, secrets are created once, no temp files remain."""

from __future__ import annotations

import stat
from pathlib import Path

from corral_common.fsio import atomic_write, create_once, fsync_dir, temp_name


def test_atomic_write_creates_parents_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file"]


def test_temp_name_is_a_unique_hidden_sibling(tmp_path: Path) -> None:
    target = tmp_path / "blob"
    first, second = temp_name(target), temp_name(target)
    assert first != second
    assert first.parent == tmp_path and first.name.startswith(".blob.") and first.name.endswith(".tmp")


def test_create_once_keeps_the_first_content(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    assert create_once(target, b"first") is True
    assert create_once(target, b"second") is False
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_fsync_dir_accepts_a_directory(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
