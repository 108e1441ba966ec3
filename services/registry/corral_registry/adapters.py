"""LoRA adapters at create: checked against their base model, and Hugging Face PEFT adapters converted to GGUF.

A GGUF adapter gets the checks llama.cpp makes when it applies one (``llama-adapter.cpp``): a LoRA of the
base model's architecture whose every ``X.lora_a``/``X.lora_b`` pair fits the base tensor ``X``. Made at
create, a mismatch is a 400 that names the tensor instead of a failed load at the first generate.

A PEFT adapter directory (``adapter_config.json`` and one safetensors file) is converted with llama.cpp's
``convert_lora_to_gguf.py`` (vendored: the converter package does not ship it) in a child process, as a
safetensors model is. That converter maps tensor names with the base model's Hugging Face config; the base
here is a GGUF, so its ``config.json`` is written from the GGUF's hyperparameters, as Ollama converted
adapters from the base model's GGUF metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral_common.digest import Digest
from corral_common.errors import BadRequest
from corral_common.gguf import GGUFFile
from corral_common.gguf_io import LazyArray

from corral_registry import convert
from corral_registry.store import ModelStore

CONVERTER = "corral_registry.vendor.convert_lora_to_gguf"
CONFIG_NAME = "adapter_config.json"
MAX_CONFIG_BYTES = 1 << 20
# GGUF architecture -> the Hugging Face class whose tensor names (and q/k row order) the converter knows.
HF_ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                    "gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM"}
# GGUF hyperparameter (under the architecture's prefix) -> its Hugging Face config.json name.
HF_HPARAMS = {"block_count": "num_hidden_layers", "embedding_length": "hidden_size",
              "feed_forward_length": "intermediate_size", "attention.head_count": "num_attention_heads",
              "attention.head_count_kv": "num_key_value_heads", "attention.key_length": "head_dim",
              "context_length": "max_position_embeddings", "rope.freq_base": "rope_theta",
              "attention.layer_norm_rms_epsilon": "rms_norm_eps", "vocab_size": "vocab_size"}
_FIX = "use the base model the adapter was trained on"


@dataclass(frozen=True)
class PeftAdapter:
    """An uploaded safetensors adapter: its weights and its adapter_config.json, both checked."""

    weights: Digest
    config: Digest


def check_fits(adapter: GGUFFile, base: GGUFFile) -> None:
    """400 with the reason llama.cpp would give when it cannot apply ``adapter`` to ``base``."""
    if adapter.kind() != "adapter":
        raise BadRequest(f"the ADAPTER file is a GGUF {adapter.kind()}, not a LoRA adapter "
                         "(its general.type must be \"adapter\")")
    kind = adapter.metadata.get("adapter.type")
    if kind != "lora":
        raise BadRequest(f"unsupported adapter type {kind!r}: only LoRA adapters (adapter.type \"lora\") "
                         "can be applied")
    if adapter.architecture() != base.architecture():
        raise BadRequest(f"the adapter is for {adapter.architecture()} models but the base model is "
                         f"{base.architecture()}: {_FIX}")
    shapes = {tensor.name: tensor.shape for tensor in base.tensors}
    for name, (lora_a, lora_b) in _pairs(adapter).items():
        _check_pair(name, lora_a, lora_b, shapes.get(name))


def _pairs(adapter: GGUFFile) -> dict[str, list[tuple[int, ...] | None]]:
    """The adapter's tensors as base tensor name -> [lora_a shape, lora_b shape]; norm vectors are skipped
    (llama.cpp ignores them too)."""
    pairs: dict[str, list[tuple[int, ...] | None]] = {}
    for tensor in adapter.tensors:
        for index, suffix in enumerate((".lora_a", ".lora_b")):
            if tensor.name.endswith(suffix):
                pairs.setdefault(tensor.name.removesuffix(suffix), [None, None])[index] = tensor.shape
                break
        else:
            if not tensor.name.endswith("_norm.weight"):
                raise BadRequest(f"adapter tensor {tensor.name[:100]!r} is not a LoRA tensor (.lora_a or .lora_b)")
    if not pairs:
        raise BadRequest("the adapter has no LoRA tensors")
    return pairs


def _check_pair(name: str, lora_a: tuple[int, ...] | None, lora_b: tuple[int, ...] | None,
                base: tuple[int, ...] | None) -> None:
    """llama.cpp's shape rules for one pair (ne order: a is [in, rank], b is [rank, out])."""
    label = name[:100]
    if lora_a is None or lora_b is None:
        raise BadRequest(f"adapter tensor pair for {label!r} is missing its {'lora_a' if lora_a is None else 'lora_b'}")
    if base is None:
        raise BadRequest(f"the adapter changes {label!r}, which the base model does not have: {_FIX}")
    if min(len(lora_a), len(lora_b), len(base)) < 2:
        raise BadRequest(f"adapter tensor {label!r} is not a matrix")
    if name.endswith("token_embd.weight"):  # A and B are swapped for the embeddings (llm_build_inp_embd)
        fits = base[0] == lora_b[1] and base[1] == lora_a[1]
    else:
        fits = base[0] == lora_a[0] and base[1] == lora_b[1] and lora_a[1] == lora_b[0]
    if not fits:
        raise BadRequest(f"adapter tensor {label!r} (lora_a {list(lora_a)}, lora_b {list(lora_b)}) does not fit "
                         f"the base model's {list(base)}: {_FIX}")


def plan_peft(store: ModelStore, files: list[tuple[str, Digest]]) -> PeftAdapter:
    """Check an uploaded safetensors adapter before the job runs (400s): its config, its one weights file."""
    names = dict(files)
    if CONFIG_NAME not in names:
        raise BadRequest(f"{CONFIG_NAME} is required to import a safetensors adapter: upload the whole adapter "
                         "directory")
    weights = [(name, digest) for name, digest in files if name.endswith(".safetensors")]
    if len(weights) != 1:
        raise BadRequest(f"a safetensors adapter has one weights file (adapter_model.safetensors), not {len(weights)}")
    name, digest = weights[0]
    convert.check_safetensors(name, store.blob_path(digest))
    _adapter_config(store.blob_path(names[CONFIG_NAME]))
    if not convert.available():
        raise BadRequest("converting safetensors adapters is not available on this server: "
                         "install corral-registry[convert]")
    return PeftAdapter(weights=digest, config=names[CONFIG_NAME])


def _adapter_config(path: Path) -> dict[str, Any]:
    """adapter_config.json as a PEFT LoRA config: a JSON object with a numeric lora_alpha."""
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise BadRequest(f"{CONFIG_NAME} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        config = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest(f"{CONFIG_NAME} is not JSON") from None
    alpha = config.get("lora_alpha") if isinstance(config, dict) else None
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise BadRequest(f"{CONFIG_NAME} has no numeric lora_alpha: only LoRA adapters can be imported")
    return config


def check_base(base: GGUFFile | None) -> GGUFFile:
    """The base model a safetensors adapter is converted for; 400 when there is none or it cannot be done."""
    if base is None:
        raise BadRequest("a safetensors adapter needs its base model: name it with FROM in the Modelfile")
    if base.architecture() not in HF_ARCHITECTURES:
        raise BadRequest(f"importing safetensors adapters for {base.architecture()} models is not supported: "
                         "convert the adapter to GGUF with llama.cpp's convert_lora_to_gguf.py")
    return base


def base_config(base: GGUFFile) -> dict[str, Any]:
    """The base model's Hugging Face config.json, from its GGUF hyperparameters (only what names and shapes need)."""
    arch = base.architecture()
    config: dict[str, Any] = {"architectures": [HF_ARCHITECTURES[arch]], "model_type": arch}
    for key, hf_key in HF_HPARAMS.items():
        value = base.metadata.get(f"{arch}.{key}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            config[hf_key] = value
    if "vocab_size" not in config:
        tokens = base.metadata.get("tokenizer.ggml.tokens")
        config["vocab_size"] = tokens.count if isinstance(tokens, LazyArray) else len(tokens or [])
    return config


def convert_peft(store: ModelStore, adapter: PeftAdapter, base: GGUFFile, work: Path) -> Path:
    """Convert the adapter for ``base`` inside ``work``; the GGUF adapter, checked to fit the base."""
    lora_dir, base_dir, out = work / "adapter", work / "base", work / "adapter.gguf"
    lora_dir.mkdir()
    base_dir.mkdir()
    os.symlink(store.blob_path(adapter.weights), lora_dir / "adapter_model.safetensors")
    os.symlink(store.blob_path(adapter.config), lora_dir / CONFIG_NAME)
    (base_dir / "config.json").write_text(json.dumps(base_config(check_base(base))))
    # f32 holds any source type exactly (adapters are small); the converter's "auto" fails on LoRA tensors.
    args = [str(lora_dir), "--base", str(base_dir), "--outfile", str(out), "--outtype", "f32"]
    gguf = convert.run_converter(CONVERTER, args, out, work, "adapter")
    check_fits(gguf, base)
    return out
