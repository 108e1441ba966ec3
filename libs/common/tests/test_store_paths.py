"""The store layout: storage keys and local paths are the same Ollama layout, built from parsed values only."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from corral_common import store_paths as paths
from corral_common.digest import Digest
from corral_common.names import ModelName

DIGEST = Digest("ab" * 32)


def test_keys_follow_ollamas_layout() -> None:
    name = ModelName.parse("team/model:v1")
    assert paths.blob_key(DIGEST) == f"blobs/sha256-{'ab' * 32}"
    assert paths.tag_key(name) == "manifests/registry.ollama.ai/team/model/v1"
    assert paths.repository_prefix("h", "team", "model") == "manifests/h/team/model"
    assert paths.layout_prefix("h") == "manifests/h"


def test_paths_are_the_keys_under_a_root(tmp_path: Path) -> None:
    name = ModelName.parse("llama3")
    assert paths.blob_path(tmp_path, DIGEST) == tmp_path / paths.blob_key(DIGEST)
    assert paths.manifest_path(tmp_path, name) == tmp_path / "manifests/registry.ollama.ai/library/llama3/latest"
    assert paths.blobs_dir(tmp_path) == tmp_path / "blobs"
    assert paths.manifests_dir(tmp_path) == tmp_path / "manifests"


def test_upload_chunks_sort_by_offset() -> None:
    session = uuid.uuid4()
    keys = [paths.upload_chunk_key(session, offset) for offset in (10, 2, 300)]
    assert sorted(keys) == [paths.upload_chunk_key(session, o) for o in (2, 10, 300)]
    assert all(k.startswith(f"_uploads/{session.hex}/") for k in keys)


@pytest.mark.parametrize("key, expected", [
    (f"blobs/sha256-{'ab' * 32}", DIGEST),
    (f"blobs/sha256-{'AB' * 32}", None),  # not the canonical key of its digest
    (f"blobs/.sha256-{'ab' * 32}.tmp", None),
    (f"blobs/x/sha256-{'ab' * 32}", None),
    (f"manifests/sha256-{'ab' * 32}", None),
])
def test_digest_of_blob_key(key: str, expected: Digest | None) -> None:
    assert paths.digest_of_blob_key(key) == expected

