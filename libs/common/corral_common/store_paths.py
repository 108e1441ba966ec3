"""The one place that turns validated names and digests into keys and paths of the model store.

The layout is Ollama's model store, so a registry's data directory is also a valid models
directory: ``blobs/sha256-<hex>`` and ``manifests/<host>/<namespace>/<model>/<tag>``, where
``<host>`` is the registry's layout host (``registry.ollama.ai`` by default, which is what lets
the embedded registry serve and receive the local store's models). Manifests are also stored
as blobs under their own digest, so a manifest can be fetched by digest. Upload sessions keep
their chunks under ``_uploads/<session id>/``. Keys are ``/``-separated strings (what a
StorageDriver takes); paths are the same keys under a local root directory.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from corral_common.digest import Digest, InvalidDigest
from corral_common.names import ModelName

BLOBS = "blobs"
MANIFESTS = "manifests"
UPLOADS = "_uploads"


class PathEscape(ValueError):
    """A computed path that would leave its root (never expected; checked as defence in depth)."""


def blob_key(digest: Digest) -> str:
    """``blobs/sha256-<hex>``, built only from a parsed Digest."""
    return f"{BLOBS}/{digest.filename()}"


def tag_key(name: ModelName) -> str:
    """``manifests/<host>/<namespace>/<model>/<tag>``, built only from a parsed ModelName."""
    return "/".join((MANIFESTS, *name.parts()))


def repository_prefix(host: str, namespace: str, model: str) -> str:
    """Where the tags of one repository live (parts already validated through ModelName)."""
    return "/".join((MANIFESTS, host, namespace, model))


def layout_prefix(host: str) -> str:
    """Every repository under one layout host."""
    return f"{MANIFESTS}/{host}"


def upload_prefix(session: uuid.UUID) -> str:
    """The folder of one upload session."""
    return f"{UPLOADS}/{session.hex}"


def upload_chunk_key(session: uuid.UUID, offset: int) -> str:
    """The chunk of an upload session that starts at ``offset`` (zero-padded to 20 digits so keys sort in order)."""
    return f"{upload_prefix(session)}/{offset:020d}"


def digest_of_blob_key(key: str) -> Digest | None:
    """The digest a ``blobs/`` key stands for, or None for anything else (temp files, strays)."""
    if not key.startswith(BLOBS + "/") or key.count("/") != 1:
        return None
    try:
        digest = Digest.parse(key.split("/", 1)[1])
    except InvalidDigest:
        return None
    return digest if blob_key(digest) == key else None


def _under(root: Path, key: str, top: str) -> Path:
    """The path of a key under root, after asserting it stays inside ``root/top``."""
    path = root.joinpath(*key.split("/"))
    if not path.resolve().is_relative_to((root / top).resolve()):
        raise PathEscape(str(path))
    return path


def blobs_dir(root: Path) -> Path:
    """``<models>/blobs``."""
    return root / BLOBS


def manifests_dir(root: Path) -> Path:
    """``<models>/manifests``."""
    return root / MANIFESTS


def blob_path(root: Path, digest: Digest) -> Path:
    """``<models>/blobs/sha256-<hex>``, built only from a parsed Digest."""
    return _under(root, blob_key(digest), BLOBS)


def manifest_path(root: Path, name: ModelName) -> Path:
    """``<models>/manifests/<host>/<namespace>/<model>/<tag>``, built only from a parsed ModelName."""
    return _under(root, tag_key(name), MANIFESTS)
