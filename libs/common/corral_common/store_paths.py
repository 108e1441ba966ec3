"""The one place that turns validated names and digests into paths of the model store."""

from __future__ import annotations

from pathlib import Path

from corral_common.digest import Digest
from corral_common.names import ModelName


class PathEscape(ValueError):
    """A computed path that would leave its root (never expected; checked as defence in depth)."""


def _inside(root: Path, path: Path) -> Path:
    """Return path after asserting it stays inside root."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise PathEscape(str(path))
    return path


def blobs_dir(root: Path) -> Path:
    """``<models>/blobs``."""
    return root / "blobs"


def manifests_dir(root: Path) -> Path:
    """``<models>/manifests``."""
    return root / "manifests"


def blob_path(root: Path, digest: Digest) -> Path:
    """``<models>/blobs/sha256-<hex>``, built only from a parsed Digest."""
    return _inside(blobs_dir(root), blobs_dir(root) / digest.filename())


def manifest_path(root: Path, name: ModelName) -> Path:
    """``<models>/manifests/<host>/<namespace>/<model>/<tag>``, built only from a parsed ModelName."""
    return _inside(manifests_dir(root), manifests_dir(root).joinpath(*name.parts()))
