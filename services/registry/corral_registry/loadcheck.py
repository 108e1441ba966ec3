"""At create, ask llama.cpp itself whether it would load a model's metadata, so a file it refuses is a 400
naming the problem now instead of an error at the first generate.

corral's own validator (``corral_common.gguf``) checks a file's structure and safety; only llama.cpp
knows which architectures, hyperparameters, tokenizers and tensors each model needs. The check runs
llama.cpp's own loader on the file with ``no_alloc`` (architecture, hyperparameters, vocabulary, every
tensor's name and shape; no weights are read or allocated) in a child process whose data memory is
capped, as quantize does: a crash or an abort fails one check, not the registry. The file reaching it
has already passed the Python validator. Where llama-cpp-python is not installed (a registry image
without it) there is nothing to ask and the check is skipped.

The child is ``python -I -m corral_registry.loadcheck PATH``: exit 0 when llama.cpp loads it, 1 with the
reason on stdout when it refuses, 2 when llama.cpp could not be started at all.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import structlog

from corral_common.digest import Digest
from corral_common.errors import BadRequest, InternalError
from corral_common.gguf import GGUFFile
from corral_common.lru import ByteLRU

from corral_registry.store import ModelStore

log = structlog.get_logger("corral.registry.loadcheck")
MEMORY_LIMIT = 1024 * 1024 * 1024  # llama.cpp reads all metadata into memory; real vocabularies need < 300 MiB
TIMEOUT_S = 300.0
_REFUSED, _UNAVAILABLE = 1, 2
_NO_GPU = {"CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": "", "ROCR_VISIBLE_DEVICES": "",
           "GGML_VK_VISIBLE_DEVICES": "", "ONEAPI_DEVICE_SELECTOR": "opencl:none"}
_PASSED: ByteLRU[str, bool] = ByteLRU(4096, lambda _: 1)  # digests llama.cpp has accepted (blobs never change)


def available() -> bool:
    """Whether llama-cpp-python is installed here (found without importing it)."""
    return importlib.util.find_spec("llama_cpp") is not None


def check_model_files(store: ModelStore, files: list[tuple[str, Digest, GGUFFile]]) -> None:
    """400 naming llama.cpp's reason when it would not load one of the model GGUFs of a create plan."""
    if not files or not available():
        return
    for _, digest, gguf in files:
        if gguf.kind() == "model" and _PASSED.get(str(digest)) is None:
            check_loadable(store.blob_path(digest))
            _PASSED.put(str(digest), True)


def check_loadable(path: Path) -> None:
    """Load ``path``'s metadata with llama.cpp in a child; BadRequest with its reason when it refuses."""
    env = {**os.environ, **_NO_GPU}
    try:
        child = subprocess.run([sys.executable, "-I", "-m", "corral_registry.loadcheck", str(path)],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                               timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InternalError("checking the model with llama.cpp took too long") from None
    if child.returncode == 0:
        return
    if child.returncode == _UNAVAILABLE:
        log.warning("llama.cpp load check skipped", reason=child.stdout.strip()[-500:])
        return
    raise BadRequest(f"llama.cpp cannot load this model: {_reason(child)}")


def _reason(child: subprocess.CompletedProcess[str]) -> str:
    if child.returncode == _REFUSED and child.stdout.strip():
        return child.stdout.strip().splitlines()[-1]
    if child.returncode < 0:
        return f"it stopped with signal {-child.returncode} reading the metadata"
    if "MemoryError" in child.stderr or "bad_alloc" in child.stderr:
        return f"reading its metadata needs more than {MEMORY_LIMIT // (1024 * 1024)} MiB of memory"
    return f"it exited with status {child.returncode} reading the metadata"


def _error_line(lines: list[str]) -> str:
    """llama.cpp's own reason ("unknown model architecture: 'x'") from its log, or a general one."""
    for line in reversed(lines):
        if "error loading model:" in line:
            reason = line.split("error loading model:", 1)[1].strip()
            if "bad_alloc" in reason:
                return f"reading its metadata needs more than {MEMORY_LIMIT // (1024 * 1024)} MiB of memory"
            return reason
    for line in reversed(lines):
        if "failed" in line or "error" in line:
            return line.strip()
    return "llama.cpp refused the file"


def _params(llama_cpp: Any) -> Any:
    """Load everything but the weights: ``no_alloc`` needs the read (not mmap) path; older builds lack it and
    check the vocabulary only."""
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    if hasattr(params, "no_alloc"):
        params.no_alloc, params.load_mode, params.use_extra_bufts = True, llama_cpp.LLAMA_LOAD_MODE_NONE, False
    else:
        params.vocab_only = True
    return params


def _child(path: str) -> int:
    """The child's body: cap data memory, load the model without its weights, report llama.cpp's reason."""
    import resource

    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))
    try:
        import ctypes

        import llama_cpp
    except Exception as exc:  # noqa: BLE001 - any failure to start llama.cpp means "cannot check", not "bad file"
        print(f"llama_cpp could not be imported: {exc}")
        return _UNAVAILABLE
    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", "replace"))
        del lines[:-200]

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    model = llama_cpp.llama_model_load_from_file(path.encode(), _params(llama_cpp))
    if not model:
        print(_error_line(lines))
        return _REFUSED
    llama_cpp.llama_model_free(model)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
