"""Quantize a GGUF model with llama.cpp, in a child process, after our own validator has read it.

llama.cpp's loader is C++ and has had memory-safety bugs (CVE-2026-7482, "Bleeding Llama": tensor
data past the end of the file), so the source is read by ``corral_common.gguf.read_gguf`` first and
only a file that passes reaches llama.cpp.  The C code runs in a child so that an abort or a crash
fails one job instead of the threaded worker, and so that its global log hook is ours alone.

The child is ``python -m corral_registry.quantize SRC DST FTYPE`` (run through ``childproc``, so it ends
if the worker is killed); it prints ``n total name`` for each tensor llama.cpp finishes and, when it
fails, llama.cpp's last log lines on stderr.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from corral_common.errors import BadRequest, InternalError
from corral_common.gguf import GGUFFile, InvalidGGUF, read_gguf
from corral_common.internal import ProgressEvent

from corral_registry import childproc

# Ollama's spelling -> llama_ftype (llama.h).
LEVELS = {"F32": 0, "F16": 1, "BF16": 32, "Q4_K_S": 14, "Q4_K_M": 15, "Q8_0": 7}
ALIASES = {"Q4_K": "Q4_K_M"}
SOURCES = ("F32", "F16", "BF16")
PROGRESS_DIGEST = "0000000000000000000"  # what Ollama sends as the digest of quantize progress
PROGRESS_INTERVAL_S = 0.5
TIMEOUT_S = 6 * 3600
_TENSOR_LINE = re.compile(r"\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
Emit = Callable[[ProgressEvent], None]


def parse_level(text: str) -> str:
    """A requested level in Ollama's spelling ("" for none); 400 with Ollama's text when unknown."""
    level = ALIASES.get(text.upper(), text.upper())
    if level and level not in LEVELS:
        raise BadRequest(f"unsupported quantization type {level} - supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0")
    return level


def check_source(gguf: GGUFFile) -> None:
    """Only float models can be quantized (Ollama's rule and message)."""
    if gguf.file_type_name() not in SOURCES:
        raise BadRequest("quantization is only supported for F16, BF16 and F32 models")


def validated_source(path: Path) -> GGUFFile:
    """Read and check the source with the pure-Python validator: a bad file is a 400 before C sees it."""
    try:
        gguf = read_gguf(path)
    except InvalidGGUF as exc:
        raise BadRequest(str(exc)) from None
    check_source(gguf)
    return gguf


class _Progress:
    """Turns per-tensor lines into Ollama's byte-scaled progress events, at most every half second."""

    def __init__(self, source: GGUFFile, level: str, emit: Emit) -> None:
        self.emit, self.total = emit, source.file_size
        self.status = f"quantizing {source.file_type_name()} model to {level}"
        self.sizes = {t.name: t.nbytes() for t in source.tensors}
        self.all_bytes = max(sum(self.sizes.values()), 1)
        self.done_bytes, self.last = 0, 0.0

    def send(self, completed: int) -> None:
        self.emit(ProgressEvent(status=self.status, digest=PROGRESS_DIGEST, total=self.total, completed=completed))

    def tensor_done(self, name: str) -> None:
        self.done_bytes += self.sizes.get(name, 0)
        now = time.monotonic()
        if now - self.last >= PROGRESS_INTERVAL_S:
            self.last = now
            self.send(min(self.total, self.total * self.done_bytes // self.all_bytes))


def _relay(lines: Iterable[str], progress: _Progress) -> None:
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            progress.tensor_done(parts[2])


def _failure(returncode: int, stderr: IO[str]) -> InternalError:
    text = stderr.read()[-4000:]
    reason = next((line.split("failed to quantize:", 1)[1].strip()
                   for line in reversed(text.splitlines()) if "failed to quantize:" in line), "")
    if returncode < 0:
        reason = reason or f"llama.cpp stopped with signal {-returncode}"
    return InternalError(f"quantizing model: {reason or 'llama.cpp could not quantize the model'}")


def _run_child(src: Path, dst: Path, level: str, progress: _Progress) -> None:
    command = childproc.command("corral_registry.quantize", str(src), str(dst), str(LEVELS[level]))
    with open(dst.with_suffix(".log"), "w+") as stderr:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                 text=True, cwd=dst.parent)
        deadline = threading.Timer(TIMEOUT_S, child.kill)  # a hung llama.cpp must not hold the job forever
        deadline.start()
        try:
            assert child.stdout is not None
            _relay(child.stdout, progress)
            returncode = child.wait()
        finally:
            deadline.cancel()
            if child.poll() is None:
                child.kill()
                child.wait()
        if returncode != 0:
            stderr.seek(0)
            raise _failure(returncode, stderr)


def quantize(src: Path, dst: Path, level: str, emit: Emit) -> GGUFFile:
    """Quantize ``src`` to ``level`` into ``dst`` (a new file), streaming progress; returns the checked result."""
    source = validated_source(src)
    progress = _Progress(source, level, emit)
    progress.send(0)
    _run_child(src, dst, level, progress)
    progress.send(progress.total)
    emit(ProgressEvent(status="verifying conversion"))
    try:
        result = read_gguf(dst)
    except InvalidGGUF as exc:
        raise InternalError(f"quantized model failed validation: {exc}") from None
    if result.file_type_name() != level:
        raise InternalError(f"quantized model has file type {result.file_type_name()}, expected {level}")
    return result


def _child(src: str, dst: str, ftype: int) -> int:
    """The child's body: llama_model_quantize with default params, tensor progress on stdout."""
    import ctypes

    import llama_cpp

    tail: collections.deque[str] = collections.deque(maxlen=40)

    @llama_cpp.llama_log_callback
    def log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", "replace")
        tail.append(line)
        match = _TENSOR_LINE.match(line)
        if match:
            print(match.group(1), match.group(2), match.group(3), flush=True)

    llama_cpp.llama_log_set(log, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    code = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if code != 0:
        sys.stderr.write("".join(tail))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2], int(sys.argv[3])))
