"""LoRA adapters at create: llama.cpp's fit rules as 400s before the job, and the checks on a PEFT upload."""

from __future__ import annotations

import json
import struct

import pytest

from corral_common.errors import BadRequest
from corral_common.gguf import FLOAT32, STRING, read_gguf
from corral_common.schemas import CreateRequest
from corral_common.testing.ggufwriter import GGUF, small_model
from corral_registry import adapters
from corral_registry.create import plan_create
from corral_registry.store import ModelStore
from corral_registry.testing import create_events, put_blob

# small_model(): token_embd.weight [64, 6], output_norm.weight [64], blk.0.attn_q.weight [32, 2] (ne order)
RANK = 4


def _lora(arch: str = "llama", general_type: str = "adapter", adapter_type: str = "lora",
          tensors: dict[str, list[int]] | None = None) -> GGUF:
    gguf = (GGUF().add("general.architecture", STRING, arch).add("general.type", STRING, general_type)
            .add("adapter.type", STRING, adapter_type).add("adapter.lora.alpha", FLOAT32, 8.0))
    default = {"blk.0.attn_q.weight.lora_a": [32, RANK], "blk.0.attn_q.weight.lora_b": [RANK, 2]}
    for name, shape in (default if tensors is None else tensors).items():
        gguf.tensor(name, shape)
    return gguf


def _fits(lora: GGUF, tmp_path) -> None:
    (tmp_path / "base.gguf").write_bytes(small_model().build())
    (tmp_path / "lora.gguf").write_bytes(lora.build())
    adapters.check_fits(read_gguf(tmp_path / "lora.gguf"), read_gguf(tmp_path / "base.gguf"))


def test_an_adapter_of_the_base_fits(tmp_path) -> None:
    embeddings = {"token_embd.weight.lora_a": [RANK, 6], "token_embd.weight.lora_b": [RANK, 64]}  # A transposed
    _fits(_lora(tensors={**embeddings, "blk.0.attn_q.weight.lora_a": [32, RANK],
                         "blk.0.attn_q.weight.lora_b": [RANK, 2], "blk.0.attn_norm.weight": [32]}), tmp_path)


@pytest.mark.parametrize("lora, error", [
    (_lora(arch="qwen2"), "the adapter is for qwen2 models but the base model is llama: use the base model"),
    (_lora(general_type="model"), "the ADAPTER file is a GGUF model, not a LoRA adapter"),
    (_lora(adapter_type="control_vector"), "unsupported adapter type 'control_vector'"),
    (_lora(tensors={"blk.0.attn_q.weight.lora_a": [32, RANK]}), "pair for 'blk.0.attn_q.weight' is missing its lora_b"),
    (_lora(tensors={"blk.9.attn_q.weight.lora_a": [32, RANK], "blk.9.attn_q.weight.lora_b": [RANK, 2]}),
     "changes 'blk.9.attn_q.weight', which the base model does not have"),
    (_lora(tensors={"blk.0.attn_q.weight.lora_a": [16, RANK], "blk.0.attn_q.weight.lora_b": [RANK, 2]}),
     r"'blk.0.attn_q.weight' \(lora_a \[16, 4\], lora_b \[4, 2\]\) does not fit the base model's \[32, 2\]"),
    (_lora(tensors={"blk.0.attn_q.weight.lora_a": [32, RANK], "blk.0.attn_q.weight.lora_b": [RANK + 1, 2]}),
     "does not fit"),
    (_lora(tensors={"blk.0.attn_q.weight": [32, 2]}), "'blk.0.attn_q.weight' is not a LoRA tensor"),
    (_lora(tensors={}), "the adapter has no LoRA tensors"),
])
def test_an_adapter_that_llama_cpp_would_refuse_is_a_400(tmp_path, lora: GGUF, error: str) -> None:
    with pytest.raises(BadRequest, match=error):
        _fits(lora, tmp_path)


def test_create_refuses_a_misfit_before_the_job_and_stores_a_fitting_one(store: ModelStore) -> None:
    create_events(store, model="tiny", files={"tiny.gguf": str(put_blob(store, small_model().build()))})
    misfit = put_blob(store, _lora(arch="gemma").build())
    with pytest.raises(BadRequest, match="the adapter is for gemma models"):
        plan_create(store, CreateRequest.model_validate({"model": "x", "from": "tiny",
                                                         "adapters": {"lora.gguf": str(misfit)}}))
    fitting = put_blob(store, _lora().build())
    create_events(store, model="x", **{"from": "tiny"}, adapters={"lora.gguf": str(fitting)})
    manifest = json.loads((store.root / "manifests/registry.ollama.ai/library/x/latest").read_bytes())
    assert [layer["digest"] for layer in manifest["layers"]
            if layer["mediaType"] == "application/vnd.ollama.image.adapter"] == [str(fitting)]


def _safetensors() -> bytes:
    header = json.dumps({"a.lora_A.weight": {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(4)


@pytest.mark.parametrize("files, error", [
    ({"adapter_model.safetensors": _safetensors()}, "adapter_config.json is required to import a safetensors adapter"),
    ({"a.safetensors": _safetensors(), "b.safetensors": _safetensors(), "adapter_config.json": b'{"lora_alpha": 8}'},
     "one weights file"),
    ({"adapter_model.safetensors": _safetensors(), "adapter_config.json": b'{"r": 8}'}, "no numeric lora_alpha"),
    ({"adapter_model.safetensors": _safetensors(), "adapter_config.json": b"[1"}, "adapter_config.json is not JSON"),
    ({"adapter_model.safetensors": b"\x00" * 16, "adapter_config.json": b'{"lora_alpha": 8}'}, "bad header length"),
])
def test_a_peft_upload_is_checked_before_the_job(store: ModelStore, files: dict[str, bytes], error: str) -> None:
    create_events(store, model="tiny", files={"tiny.gguf": str(put_blob(store, small_model().build()))})
    uploaded = {name: str(put_blob(store, data)) for name, data in files.items()}
    with pytest.raises(BadRequest, match=error):
        plan_create(store, CreateRequest.model_validate({"model": "x", "from": "tiny", "adapters": uploaded}))


def test_a_peft_adapter_for_an_architecture_the_converter_cannot_name_is_a_400(store: ModelStore) -> None:
    create_events(store, model="enc", files={"enc.gguf": str(put_blob(store, small_model("bert").build()))})
    uploaded = {"adapter_model.safetensors": str(put_blob(store, _safetensors())),
                "adapter_config.json": str(put_blob(store, b'{"lora_alpha": 8}'))}
    with pytest.raises(BadRequest, match="importing safetensors adapters for bert models is not supported"):
        plan_create(store, CreateRequest.model_validate({"model": "x", "from": "enc", "adapters": uploaded}))


def test_the_base_config_is_written_from_the_gguf_hyperparameters(tmp_path) -> None:
    (tmp_path / "base.gguf").write_bytes(small_model().build())
    config = adapters.base_config(read_gguf(tmp_path / "base.gguf"))
    assert config == {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 1,
                      "hidden_size": 64, "max_position_embeddings": 2048, "vocab_size": 6}
