"""Scratch directories of a worker killed mid-create are removed; those of running processes are kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from corral_registry.store import ModelStore
from corral_registry.store import _host as this_host


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_only_the_scratch_of_gone_processes_on_this_machine_is_swept(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    mine = store.scratch_dir()
    dead = tmp_path / f".scratch-{_dead_pid()}@{this_host()}-k1ll3d"
    elsewhere = tmp_path / f".scratch-{_dead_pid()}@another.machine-x"
    for folder in (dead, elsewhere):
        (folder / "model").mkdir(parents=True)
        (folder / "model.gguf").write_bytes(b"half a model")
    assert mine.name.startswith(".scratch-") and f"@{this_host()}-" in mine.name

    assert store.sweep_scratch() == [dead.name]
    assert mine.is_dir() and elsewhere.is_dir() and not dead.exists()


def test_a_new_scratch_directory_sweeps_the_old_ones_first(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    dead = tmp_path / f".scratch-{_dead_pid()}@{this_host()}-old"
    dead.mkdir()
    store.scratch_dir()
    assert not dead.exists()
