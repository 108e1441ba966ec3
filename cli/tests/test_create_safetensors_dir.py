"""``corral create`` with ``FROM <directory>`` of a safetensors model: which files go up, under which names."""

from __future__ import annotations

from corral_cli.commands.create import model_files, request_file_names


def test_a_safetensors_directory_sends_weights_configs_and_tokenizers_with_relative_names(tmp_path):
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer.model", "vocab.txt",
                 "chat_template.jinja", "1_Pooling/config.json", "README.md", "pytorch_model.bin",
                 "onnx/model.onnx", ".git/config.json", ".cache/x.json", "modeling_custom.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())

    names = sorted(request_file_names(model_files(tmp_path)).values())

    assert names == ["1_Pooling/config.json", "chat_template.jinja", "config.json", "model.safetensors",
                     "tokenizer.json", "tokenizer.model", "vocab.txt"]


def test_a_gguf_directory_still_sends_only_the_gguf(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    (tmp_path / "config.json").write_text("{}")
    assert [p.name for p in model_files(tmp_path)] == ["model.gguf"]
