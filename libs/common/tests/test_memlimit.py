"""Each service's memory ceiling (issue 18 item 1): a runaway allocation fails alone, a mapped file still loads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from fastapi.testclient import TestClient

from corral_common.http import service_app
from corral_common.memlimit import LARGE_SHARE, SMALL_SHARE, machine_memory, memory_limit


def test_the_ceiling_is_a_share_of_the_machine_unless_set() -> None:
    machine = machine_memory()
    assert memory_limit("corral_inference.main", {}) == int(machine * LARGE_SHARE)
    assert memory_limit("celery", {}) == int(machine * LARGE_SHARE)
    assert memory_limit("corral_api.main", {}) == int(machine * SMALL_SHARE)
    assert memory_limit("corral_api.main", {"CORRAL_MEMORY_LIMIT": "2GiB"}) == 2 << 30
    assert memory_limit("corral_inference.main", {"CORRAL_MEMORY_LIMIT": "0"}) is None
    assert memory_limit("corral_api.main", {"CORRAL_MEMORY_LIMIT": "plenty"}) == int(machine * SMALL_SHARE)


def test_dos_past_the_ceiling_an_allocation_fails_alone_and_a_mapped_file_still_reads(tmp_path) -> None:
    big = tmp_path / "weights.bin"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # sparse: a model file four times the ceiling
    script = textwrap.dedent(f"""
        import mmap
        from corral_common.memlimit import apply_memory_limit
        assert apply_memory_limit("corral_inference.main", {{"CORRAL_MEMORY_LIMIT": "256MiB"}}) == 256 << 20
        try:
            bytearray(512 << 20)
            print("allocated")
        except MemoryError:
            print("refused")
        with open({str(big)!r}, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
            print("mapped", len(m), sum(m[i] for i in range(0, len(m), 1 << 24)))
        print("alive", len(bytearray(16 << 20)))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["refused", f"mapped {1 << 30} 0", f"alive {16 << 20}"]


def test_dos_a_memory_error_is_a_503_that_names_the_ceiling() -> None:
    app = service_app("corral test")

    @app.post("/api/show")
    async def runaway() -> None:
        raise MemoryError

    answer = TestClient(app).post("/api/show", json={})
    assert answer.status_code == 503
    assert answer.json() == {"error": "out of memory: this request needed more memory than the service may use "
                                      "(CORRAL_MEMORY_LIMIT); send a smaller request"}
