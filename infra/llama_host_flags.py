"""Print the extra CMake flags llama.cpp needs on this host, or nothing.

llama.cpp builds with ``-march=native``, so it compiles in every instruction set the CPU
advertises. Virtual machines (Firecracker among them) advertise Intel AMX in cpuid, and
llama.cpp 0.3.36's AMX matrix multiply then dies with SIGILL on the first prompt (seen here);
some such guests also lose tile data when a thread is descheduled. So on a virtual machine that
advertises AMX, or a host where one tile instruction faults even with the kernel's permission
(probed in a child process), this prints the flags that build llama.cpp without AMX; its
AVX-512 paths still apply. Bare-metal hosts where AMX works keep it.

    python3 infra/llama_host_flags.py    # used by `make install`
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
# A child that asks the kernel for AMX state, loads a one-tile config and zeroes tmm0.
PROBE = r"""
import ctypes, mmap
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall(158, 0x1023, 18)  # arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
code = bytes.fromhex("c4e2784907" "c4e27b49c0" "c4e27849c0" "c3")  # ldtilecfg [rdi]; tilezero tmm0; tilerelease; ret
page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(code)
run = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
config = (ctypes.c_uint8 * 64)()
config[0], config[16], config[48] = 1, 64, 16  # palette 1; tmm0: 64 bytes a row, 16 rows
run(ctypes.addressof(config))
"""


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of /proc/cpuinfo's first processor."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def amx_runs() -> bool:
    """Whether a tile instruction runs here (a child process, so a fault cannot take us down)."""
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, timeout=30).returncode == 0


def cmake_args(cpuinfo: str) -> list[str]:
    """The CMake arguments this host needs: none, or AMX turned off."""
    flags = cpu_flags(cpuinfo)
    if "amx_tile" not in flags or ("hypervisor" not in flags and amx_runs()):
        return []
    return [f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}"]


def host_cmake_args() -> list[str]:
    """cmake_args for this machine (none where there is no /proc/cpuinfo, e.g. macOS)."""
    try:
        return cmake_args(Path("/proc/cpuinfo").read_text())
    except OSError:
        return []


def main() -> None:
    print(shlex.join(host_cmake_args()))


if __name__ == "__main__":
    main()
