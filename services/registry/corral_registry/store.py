"""The filesystem model store in Ollama's layout: ``manifests/<host>/<ns>/<model>/<tag>`` and ``blobs/``."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from corral_common.digest import Digest
from corral_common.errors import BadRequest, InsufficientStorage
from corral_common.fsio import atomic_write, fsync_dir
from corral_common.logs import get_logger
from corral_common.names import InvalidName, ModelName
from corral_common.store_paths import blob_path, blobs_dir, manifest_path, manifests_dir

from corral_registry.manifest import InvalidManifest, Manifest, parse_manifest

log = get_logger("corral.registry.store")
SCRATCH_PREFIX = ".scratch-"
_SCRATCH_OWNER = re.compile(r"\.scratch-(\d+)@(.+)-[a-z0-9_]+")  # .scratch-<pid>@<host>-<random>


def _host() -> str:
    """This machine's name as it may appear in a file name."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"


def _running(pid: int) -> bool:
    """Whether a process with this id exists here."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class StoredModel:
    """A manifest as found on disk."""

    name: ModelName
    manifest: Manifest
    raw: bytes
    modified: float

    def digest_hex(self) -> str:
        """sha256 of the manifest file bytes (the model's ID)."""
        return hashlib.sha256(self.raw).hexdigest()


def _match_dir(parent: Path, part: str) -> str | None:
    """The entry of parent that equals part case-insensitively (exact casing preferred)."""
    if (parent / part).exists():
        return part
    try:
        entries = os.listdir(parent)
    except OSError:
        return None
    return next((e for e in sorted(entries) if e.lower() == part.lower()), None)


class ModelStore:
    """Manifests and content-addressed blobs under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        blobs_dir(root).mkdir(parents=True, exist_ok=True)
        manifests_dir(root).mkdir(parents=True, exist_ok=True)

    # --- blobs -----------------------------------------------------------------------------
    def blob_path(self, digest: Digest) -> Path:
        """Where a blob lives."""
        return blob_path(self.root, digest)

    def has_blob(self, digest: Digest) -> bool:
        """Whether a verified blob is stored."""
        return self.blob_path(digest).is_file()

    def partial_path(self, digest: Digest) -> Path:
        """A download in progress, as Ollama names it: ``blobs/sha256-<hex>-partial``."""
        return self.blob_path(digest).with_name(f"{digest.filename()}-partial")

    def part_path(self, digest: Digest, number: int) -> Path:
        """The state of one ranged part of a download: ``blobs/sha256-<hex>-partial-<N>``."""
        return self.blob_path(digest).with_name(f"{digest.filename()}-partial-{number}")

    def lock_path(self, digest: Digest) -> Path:
        """The lock that makes one process at a time download a digest (single flight)."""
        return self.blob_path(digest).with_name(f"{digest.filename()}-partial.lock")

    def _temp_blob(self) -> Path:
        """A unique temporary name inside blobs/ (so the final rename is atomic)."""
        return blobs_dir(self.root) / f".upload-{uuid.uuid4().hex}.tmp"

    async def write_blob(self, digest: Digest, chunks: AsyncIterator[bytes]) -> bool:
        """Store a blob from a stream; verify sha256 before it becomes visible. True if created."""
        if self.has_blob(digest):
            return False
        tmp, hasher = self._temp_blob(), hashlib.sha256()
        try:
            with open(tmp, "wb") as handle:
                async for chunk in chunks:
                    hasher.update(chunk)
                    handle.write(chunk)
            got = Digest(hasher.hexdigest())
            if got != digest:
                raise BadRequest(f'digest mismatch, expected "{digest}", got "{got}"')
            os.replace(tmp, self.blob_path(digest))
            return True
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise InsufficientStorage("no space left on device") from None
            raise
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> tuple[Digest, bool]:
        """Store a small blob (template, params, config); returns its digest and whether it was new."""
        digest = Digest.of_bytes(data)
        if self.has_blob(digest):
            return digest, False
        atomic_write(self.blob_path(digest), data)
        return digest, True

    def put_file(self, path: Path) -> tuple[Digest, bool]:
        """Move a finished file (on this store's filesystem) in as a blob; returns its digest and whether it was new."""
        hasher = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                hasher.update(block)
            os.fsync(handle.fileno())
        digest = Digest(hasher.hexdigest())
        if self.has_blob(digest):
            path.unlink()
            return digest, False
        os.replace(path, self.blob_path(digest))
        fsync_dir(blobs_dir(self.root))
        return digest, True

    def scratch_dir(self) -> Path:
        """A new private directory on the store's filesystem for conversion work (the caller removes it;
        it is named after its process, so that one a killed worker left behind can be told and swept)."""
        self.sweep_scratch()
        return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}@{_host()}-", dir=self.root))

    def sweep_scratch(self) -> list[str]:
        """Remove the scratch directories of processes on this machine that are gone (a worker killed mid-job)."""
        removed, host = [], _host()
        for entry in self.root.glob(f"{SCRATCH_PREFIX}*"):
            owner = _SCRATCH_OWNER.fullmatch(entry.name)
            if owner and owner.group(2) == host and not _running(int(owner.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        if removed:
            log.info("removed scratch directories of stopped workers", directories=removed)
        return removed

    def read_blob(self, digest: Digest, limit: int = 16 << 20) -> bytes:
        """Read a small blob fully (bounded)."""
        with open(self.blob_path(digest), "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise BadRequest(f"blob {digest} is larger than {limit} bytes")
        return data

    # --- manifests -------------------------------------------------------------------------
    def resolve(self, name: ModelName) -> ModelName | None:
        """The stored name matching ``name`` case-insensitively, part by part, or None."""
        parent, parts = manifests_dir(self.root), []
        for part in name.parts():
            found = _match_dir(parent, part)
            if found is None:
                return None
            parts.append(found)
            parent = parent / found
        return ModelName.from_parts(*parts) if parent.is_file() else None

    def target_name(self, name: ModelName) -> ModelName:
        """The name to write: reuse the casing of each existing directory part."""
        parent, parts = manifests_dir(self.root), []
        for part in name.parts():
            found = _match_dir(parent, part) or part
            parts.append(found)
            parent = parent / found
        return ModelName.from_parts(*parts)

    def get(self, name: ModelName) -> StoredModel | None:
        """Load a manifest by (case-insensitive) name."""
        stored = self.resolve(name)
        if stored is None:
            return None
        path = manifest_path(self.root, stored)
        raw = path.read_bytes()
        return StoredModel(stored, parse_manifest(raw), raw, path.stat().st_mtime)

    def put_manifest(self, name: ModelName, manifest: Manifest) -> ModelName:
        """Write a manifest atomically (always last, after its blobs) and return the stored name."""
        target = self.target_name(name)
        atomic_write(manifest_path(self.root, target), manifest.to_bytes())
        return target

    def put_raw_manifest(self, name: ModelName, raw: bytes) -> ModelName:
        """Write pulled manifest bytes exactly as received (their digest is the model's ID), atomically."""
        target = self.target_name(name)
        atomic_write(manifest_path(self.root, target), raw)
        return target

    def copy_manifest(self, source: StoredModel, destination: ModelName) -> None:
        """Byte-copy a manifest to a new name."""
        atomic_write(manifest_path(self.root, self.target_name(destination)), source.raw)

    def list(self) -> list[StoredModel]:
        """Every readable manifest exactly four levels deep; unreadable ones are logged and skipped."""
        found: list[StoredModel] = []
        for path in manifests_dir(self.root).glob("*/*/*/*"):
            if not path.is_file() or path.name.startswith("."):
                continue
            try:
                name = ModelName.from_parts(*path.relative_to(manifests_dir(self.root)).parts)
                raw = path.read_bytes()
                found.append(StoredModel(name, parse_manifest(raw), raw, path.stat().st_mtime))
            except (InvalidName, InvalidManifest, OSError) as exc:
                log.warning("skipping unreadable manifest", path=str(path), error=str(exc))
        return found

    def delete(self, stored: StoredModel) -> None:
        """Remove a manifest, empty parent directories, and blobs nothing else references."""
        path = manifest_path(self.root, stored.name)
        path.unlink()
        self._remove_empty_dirs(path.parent)
        self.prune(stored.manifest.all_digests())

    def _remove_empty_dirs(self, directory: Path) -> None:
        """Remove now-empty manifest directories up to (not including) manifests/."""
        top = manifests_dir(self.root)
        while directory != top and directory.is_relative_to(top):
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def referenced(self) -> set[Digest]:
        """Every digest referenced by any manifest."""
        refs: set[Digest] = set()
        for model in self.list():
            refs |= model.manifest.all_digests()
        return refs

    def prune(self, candidates: set[Digest]) -> None:
        """Delete candidate blobs that no manifest references."""
        for digest in candidates - self.referenced():
            self.blob_path(digest).unlink(missing_ok=True)
