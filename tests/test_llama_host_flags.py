"""The host probe behind `make install`: which machines build llama.cpp without AMX."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "infra" / "llama_host_flags.py"
spec = importlib.util.spec_from_file_location("llama_host_flags", SCRIPT)
flags = importlib.util.module_from_spec(spec)
spec.loader.exec_module(flags)


def _cpuinfo(*names: str) -> str:
    return f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 {' '.join(names)}\n\nprocessor\t: 1\n"


def test_cpus_without_amx_need_no_flags(monkeypatch) -> None:
    monkeypatch.setattr(flags, "amx_runs", lambda: pytest.fail("no probe without AMX"))
    assert flags.cmake_args(_cpuinfo("avx512f", "hypervisor")) == []


def test_a_virtual_machine_that_advertises_amx_builds_without_it(monkeypatch) -> None:
    monkeypatch.setattr(flags, "amx_runs", lambda: True)  # even where one tile instruction happens to run
    args = flags.cmake_args(_cpuinfo("amx_tile", "amx_int8", "hypervisor"))
    assert args == ["-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16",
                    "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"]


@pytest.mark.parametrize(("runs", "expected"), [(True, False), (False, True)])
def test_bare_metal_keeps_amx_only_where_a_tile_instruction_runs(monkeypatch, runs, expected) -> None:
    monkeypatch.setattr(flags, "amx_runs", lambda: runs)
    assert bool(flags.cmake_args(_cpuinfo("amx_tile", "amx_int8"))) is expected


def test_the_printed_line_splits_back_into_the_same_arguments() -> None:
    """make passes the line through CMAKE_ARGS, which scikit-build-core splits with shlex."""
    printed = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True).stdout
    assert shlex.split(printed) == flags.host_cmake_args()
