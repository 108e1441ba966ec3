"""llama.cpp's ``llama-server``, built once per machine from the sources vendored in the llama-cpp-python sdist.

The binary is cached under ``~/.cache/corral/llama-server/<version>/llama-server`` (``$XDG_CACHE_HOME``
is honoured) and reused by later runs; nothing is written inside the repository. Every step has a
time limit. Run alone to build (or find) it: ``.venv/bin/python bench/llama_server_build.py``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))
from llama_host_flags import host_cmake_args  # noqa: E402 - the same host flags as `make install`'s wheel

LLAMA_CPP_VERSION = "0.3.36"
DOWNLOAD_TIMEOUT = 900  # pip download prepares the sdist's metadata: about 2 minutes here
CONFIGURE_TIMEOUT = 600
BUILD_TIMEOUT = 3600  # 12 CPU-minutes; 37 wall minutes on 2 busy cores
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DGGML_NATIVE=ON", "-DLLAMA_BUILD_SERVER=ON",
    # A self-contained binary that can be moved out of the build folder.
    "-DBUILD_SHARED_LIBS=OFF",
    # No network at build time: no web UI download from a model hub, no npm, no TLS.
    "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
]


def cache_dir(version: str = LLAMA_CPP_VERSION) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "corral" / "llama-server" / (version + ("-noamx" if host_cmake_args() else ""))


def binary_path(version: str = LLAMA_CPP_VERSION) -> Path:
    return cache_dir(version) / "llama-server"


def _log(message: str) -> None:
    print(f"[llama-server] {message}", file=sys.stderr, flush=True)


def _run(argv: list[str], timeout: float, log: Path, cwd: Path | None = None) -> None:
    """Run a step with its output in a log file; raise with the log's tail on failure or timeout."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        process = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout)
        except BaseException:  # timeout or Ctrl+C: the whole process group goes
            os.killpg(process.pid, 9)
            process.wait()
            raise
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{argv[0]} failed ({code}); see {log}:\n{tail}")


def ensure_llama_server(version: str = LLAMA_CPP_VERSION) -> tuple[Path, float | None]:
    """The cached binary, building it first if needed: (path, build seconds or None when cached)."""
    target = binary_path(version)
    if target.is_file() and os.access(target, os.X_OK):
        return target, None
    work = cache_dir(version)
    work.mkdir(parents=True, exist_ok=True)
    with (work / ".lock").open("w") as lock:  # two benchmarks at once build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target, None
        return target, _build(version, work, target)


def _build(version: str, work: Path, target: Path) -> float:
    started = time.monotonic()
    log = work / "build.log"
    sdist = work / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.is_file():
        _log(f"downloading the llama-cpp-python {version} sdist (log: {log})")
        _run([sys.executable, "-m", "pip", "--disable-pip-version-check", "download", "--no-binary", ":all:",
              "--no-deps", f"llama-cpp-python=={version}", "-d", str(work)], DOWNLOAD_TIMEOUT, log)
    source = work / "llama.cpp"
    if not (source / "CMakeLists.txt").is_file():
        _log("extracting vendor/llama.cpp")
        shutil.rmtree(source, ignore_errors=True)
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        with tarfile.open(sdist) as archive:
            members = []
            for member in archive.getmembers():
                if member.name.startswith(prefix) and len(member.name) > len(prefix):
                    member.name = member.name[len(prefix):]
                    members.append(member)
            archive.extractall(source, members=members, filter="data")
    build = work / "build"
    jobs = str(os.cpu_count() or 2)
    _log(f"configuring and building llama-server with {jobs} jobs (12 CPU-minutes: 15-40 minutes on 2 cores; log: {log})")
    _run(["cmake", "-S", str(source), "-B", str(build), *CMAKE_FLAGS, *host_cmake_args()], CONFIGURE_TIMEOUT, log)
    _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs], BUILD_TIMEOUT, log)
    built = build / "bin" / "llama-server"
    partial = target.with_suffix(".partial")
    shutil.copy2(built, partial)
    partial.rename(target)
    seconds = time.monotonic() - started
    (work / "build-seconds.txt").write_text(f"{seconds:.0f}\n")
    _log(f"built {target} in {seconds / 60:.1f} min")
    shutil.rmtree(build, ignore_errors=True)  # ~hundreds of MiB of objects; the sources stay for a rebuild
    return seconds


if __name__ == "__main__":
    path, took = ensure_llama_server()
    print(path, f"(built in {took:.0f} s)" if took is not None else "(cached)")
