"""The /v2 registry: blobs, upload sessions, manifests and tags over a StorageDriver and the metadata DB.

Invariants (distribution's blobwriter and Ollama's store): a blob becomes visible only after its
size and sha256 are verified; a manifest is accepted only when every blob it names exists, and
its tag file is written last and atomically; every storage key comes from ``corral_common.store_paths``.

Upload sessions: where the driver can append (filesystem, memory) a session's chunks extend one data object
(its chunk key at offset 0) under the driver's lock, hashed as they arrive, and a finished upload is renamed
into place: each pushed byte is written once and read never. Elsewhere (S3) each chunk is an object of its own,
hashed and joined when the upload finishes.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from corral_common import store_paths as paths
from corral_common.digest import Digest
from corral_common.logs import get_logger

from corral_registry import media_types
from corral_registry.db import Database
from corral_registry.db import queries as q
from corral_registry.manifest import MAX_MANIFEST_BYTES, InvalidManifest, parse_manifest
from corral_registry.storage import FileInfo, FileWriter, InvalidOffset, ObjectBusy, PathNotFound, StorageDriver
from corral_registry.v2.errors import RegistryError
from corral_registry.v2.names import Repo
from corral_registry.v2.blob_io import RunningDigests, pump

log = get_logger("corral.registry.v2")
MANIFEST_TYPES = (media_types.MANIFEST, "application/vnd.oci.image.manifest.v1+json")
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Upload:
    """Where an upload session stands."""

    id: uuid.UUID
    repo: str
    offset: int


class Registry:
    """Everything the /v2 routes do; storage calls are synchronous and run off the event loop."""

    def __init__(self, driver: StorageDriver, db: Database, layout_host: str, redirect: bool = True) -> None:
        self.driver, self.db, self.layout_host, self.redirect = driver, db, layout_host, redirect
        self.digests = RunningDigests()

    # --- blobs ----------------------------------------------------------------------------------
    def blob_info(self, digest: Digest) -> FileInfo:
        """Size of a stored blob; 404 BLOB_UNKNOWN otherwise."""
        info = self.driver.stat(paths.blob_key(digest))
        if info is None:
            raise RegistryError("BLOB_UNKNOWN", {"digest": str(digest)})
        return info

    def blob_url(self, digest: Digest) -> str | None:
        """A direct URL for the blob when the storage can presign (S3) and redirects are on."""
        return self.driver.url_for(paths.blob_key(digest)) if self.redirect else None

    def open_blob(self, digest: Digest, offset: int) -> BinaryIO:
        """A reader positioned at offset."""
        try:
            return self.driver.reader(paths.blob_key(digest), offset)
        except PathNotFound:
            raise RegistryError("BLOB_UNKNOWN", {"digest": str(digest)}) from None

    def delete_blob(self, digest: Digest) -> None:
        """Remove a blob (manifests still naming it become unpullable: run GC rather than this)."""
        try:
            self.driver.delete(paths.blob_key(digest))
        except PathNotFound:
            raise RegistryError("BLOB_UNKNOWN", {"digest": str(digest)}) from None

    async def put_monolithic(self, digest: Digest, body: AsyncIterator[bytes], length: int | None) -> None:
        """POST ``?digest=`` or a session PUT with the whole blob: verify, then make it visible."""
        hasher = hashlib.sha256()
        writer = await asyncio.to_thread(self.driver.writer, paths.blob_key(digest))
        try:
            size = await pump(body, writer, hasher, length)
            self._check(digest, hasher, size, length)
            await asyncio.to_thread(writer.commit)
        finally:
            await asyncio.to_thread(writer.__exit__, None, None, None)

    @staticmethod
    def _check(digest: Digest, hasher: Any, size: int, length: int | None) -> None:
        if length is not None and size != length:
            raise RegistryError("SIZE_INVALID", {"expected": length, "got": size})
        got = Digest(hasher.hexdigest())
        if got != digest:
            raise RegistryError("DIGEST_INVALID", {"expected": str(digest), "got": str(got)})

    def mount(self, digest: Digest) -> bool:
        """Cross-repository mount: blobs are shared by content, so an existing blob is simply linked."""
        return self.driver.stat(paths.blob_key(digest)) is not None

    # --- upload sessions --------------------------------------------------------------------------
    def start_upload(self, repo: Repo) -> Upload:
        """Open a session for chunked or streamed uploads."""
        upload_id = uuid.uuid4()
        with self.db.session() as session:
            q.create_upload(session, upload_id.hex, str(repo))
        return Upload(upload_id, str(repo), 0)

    def upload(self, repo: Repo, upload_id: str) -> Upload:
        """A session of this repository; 404 BLOB_UPLOAD_UNKNOWN otherwise."""
        try:
            parsed = uuid.UUID(hex=upload_id)
        except ValueError:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", {"uuid": upload_id}) from None
        with self.db.session() as session:
            row = q.get_upload(session, parsed.hex)
            if row is None or row.repository != str(repo):
                raise RegistryError("BLOB_UPLOAD_UNKNOWN", {"uuid": upload_id})
            return Upload(parsed, row.repository, row.offset)

    async def append(self, upload: Upload, start: int | None, body: AsyncIterator[bytes],
                     length: int | None) -> Upload:
        """Store one chunk; it must start at the session's offset (else 416)."""
        start = upload.offset if start is None else start
        if start != upload.offset:
            raise _out_of_order(upload.offset)
        if self.driver.can_append:
            size = await self._append_in_place(upload, start, body, length)
        else:
            size = await self._append_chunk(upload, start, body, length)
        return Upload(upload.id, upload.repo, start + size)

    async def _append_in_place(self, upload: Upload, start: int, body: AsyncIterator[bytes],
                               length: int | None) -> int:
        """Extend the session's data object, hashing the chunk onto the session's running digest."""
        writer = await asyncio.to_thread(self._hold, upload, start)
        try:
            sha = self.digests.resume(upload.id.hex, start)
            size = await pump(body, writer, sha, length)
            _check_length(size, length)
            if size:
                await asyncio.to_thread(self._commit_and_advance, writer, upload, start, size)
                self.digests.record(upload.id.hex, start + size, sha)
        finally:
            await asyncio.to_thread(writer.__exit__, None, None, None)
        return size

    def _hold(self, upload: Upload, start: int) -> FileWriter:
        """The session's data object, locked, once the database says (under the lock) the session ends at start."""
        try:
            writer = self.driver.appender(paths.upload_chunk_key(upload.id, 0), start)
        except ObjectBusy:
            raise _out_of_order(start) from None
        except PathNotFound:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", {"uuid": upload.id.hex}) from None
        except InvalidOffset:
            raise RegistryError("BLOB_UPLOAD_INVALID", {"uuid": upload.id.hex}) from None
        try:
            with self.db.session() as session:
                row = q.get_upload(session, upload.id.hex)
                current = None if row is None else row.offset
            if current is None:
                raise RegistryError("BLOB_UPLOAD_UNKNOWN", {"uuid": upload.id.hex})
            if current != start:
                raise _out_of_order(current)
        except BaseException:
            writer.__exit__(None, None, None)
            raise
        return writer

    def _commit_and_advance(self, writer: FileWriter, upload: Upload, start: int, size: int) -> None:
        """Keep the chunk, then move the session's offset (still under the lock)."""
        writer.commit()
        if not self._advance(upload, start, size):
            raise RegistryError("RANGE_INVALID", {"offset": start})

    async def _append_chunk(self, upload: Upload, start: int, body: AsyncIterator[bytes],
                            length: int | None) -> int:
        """Store the chunk as an object of its own (drivers that cannot append)."""
        writer = await asyncio.to_thread(self.driver.writer, paths.upload_chunk_key(upload.id, start))
        try:
            size = await pump(body, writer, None, length)
            _check_length(size, length)
            if size:
                await asyncio.to_thread(writer.commit)
        finally:
            await asyncio.to_thread(writer.__exit__, None, None, None)
        if size and not await asyncio.to_thread(self._advance, upload, start, size):
            raise RegistryError("RANGE_INVALID", {"offset": start})
        return size

    def _advance(self, upload: Upload, start: int, size: int) -> bool:
        with self.db.session() as session:
            return q.advance_upload(session, upload.id.hex, start, size)

    def _chunks(self, upload: Upload) -> list[str]:
        """The chunk keys of a session in offset order, checked to be contiguous."""
        try:
            keys = self.driver.list(paths.upload_prefix(upload.id))
        except PathNotFound:
            return []
        expected, ordered = 0, []
        for key in keys:
            info = self.driver.stat(key)
            if info is None or int(key.rsplit("/", 1)[1]) != expected:
                raise RegistryError("BLOB_UPLOAD_INVALID", {"uuid": upload.id.hex})
            ordered.append(key)
            expected += info.size
        if expected != upload.offset:
            raise RegistryError("BLOB_UPLOAD_INVALID", {"uuid": upload.id.hex})
        return ordered

    def finish(self, upload: Upload, digest: Digest) -> None:
        """Verify the uploaded bytes against the digest, then make the blob visible; the session ends either way."""
        try:
            if self.driver.can_append:
                self._finish_in_place(upload, digest)
            else:
                self._finish_chunks(upload, digest)
        finally:
            self.cancel(upload)

    def _finish_in_place(self, upload: Upload, digest: Digest) -> None:
        """Check the session's data (its running digest, or read back when this process did not see it all) and
        rename it into place while holding it, so no append can reach the blob."""
        key = paths.upload_chunk_key(upload.id, 0)
        sha = self.digests.take(upload.id.hex, upload.offset)
        with self._hold(upload, upload.offset):
            info = self.driver.stat(key)
            if info is None or info.size != upload.offset:
                raise RegistryError("BLOB_UPLOAD_INVALID", {"uuid": upload.id.hex})
            self._check(digest, sha or self._hash_objects([key]), upload.offset, None)
            if self.driver.stat(paths.blob_key(digest)) is None:
                self.driver.move(key, paths.blob_key(digest))

    def _finish_chunks(self, upload: Upload, digest: Digest) -> None:
        """Hash the chunk objects in order, then join them into the blob."""
        chunks = self._chunks(upload)
        self._check(digest, self._hash_objects(chunks), upload.offset, None)
        if self.driver.stat(paths.blob_key(digest)) is None:
            self._assemble(chunks, paths.blob_key(digest))

    def _hash_objects(self, keys: list[str]) -> Any:
        """The sha256 of the objects' bytes, one after the other."""
        hasher = hashlib.sha256()
        for key in keys:
            with self.driver.reader(key) as stream:
                while block := stream.read(READ_CHUNK):
                    hasher.update(block)
        return hasher

    def _assemble(self, chunks: list[str], target: str) -> None:
        """One chunk is renamed into place; several are concatenated through a writer."""
        if len(chunks) == 1:
            self.driver.move(chunks[0], target)
            return
        with self.driver.writer(target) as writer:
            for key in chunks:
                with self.driver.reader(key) as stream:
                    while block := stream.read(READ_CHUNK):
                        writer.write(block)
            writer.commit()

    def cancel(self, upload: Upload) -> None:
        """Drop a session and its chunks."""
        self.digests.take(upload.id.hex, -1)
        with self.db.session() as session:
            q.delete_upload(session, upload.id.hex)
        try:
            self.driver.delete(paths.upload_prefix(upload.id))
        except PathNotFound:
            pass

    # --- manifests --------------------------------------------------------------------------------
    def get_manifest(self, repo: Repo, reference: Digest | str) -> tuple[bytes, Digest]:
        """Manifest bytes exactly as pushed, and their digest."""
        if isinstance(reference, str):
            try:
                raw = self.driver.get_content(paths.tag_key(repo.name(self.layout_host, reference)))
            except PathNotFound:
                raise RegistryError("MANIFEST_UNKNOWN", {"tag": reference}) from None
            return raw, Digest.of_bytes(raw)
        raw = self._by_digest(repo, reference)
        if raw is None:
            raise RegistryError("MANIFEST_UNKNOWN", {"digest": str(reference)})
        return raw, reference

    def _by_digest(self, repo: Repo, digest: Digest) -> bytes | None:
        """A revision the repository holds: its blob if the DB knows it, else a tag file with that digest."""
        with self.db.session() as session:
            known = q.has_manifest(session, str(repo), str(digest))
        if known:
            try:
                return self.driver.get_content(paths.blob_key(digest))
            except PathNotFound:
                pass
        for tag in self._stored_tags(repo):
            try:
                raw = self.driver.get_content(paths.tag_key(repo.name(self.layout_host, tag)))
            except PathNotFound:
                continue
            if Digest.of_bytes(raw) == digest:
                return raw
        return None

    def _stored_tags(self, repo: Repo) -> list[str]:
        try:
            keys = self.driver.list(paths.repository_prefix(self.layout_host, repo.namespace, repo.model))
        except PathNotFound:
            return []
        return [key.rsplit("/", 1)[1] for key in keys]

    def put_manifest(self, repo: Repo, reference: Digest | str, body: bytes, content_type: str) -> Digest:
        """Check a manifest and store it: as a blob under its digest, in the DB, and (last) at its tag."""
        if len(body) > MAX_MANIFEST_BYTES:
            raise RegistryError("TOO_LARGE", {"limit": MAX_MANIFEST_BYTES})
        if content_type.split(";")[0].strip() not in MANIFEST_TYPES:
            raise RegistryError("MANIFEST_INVALID", {"content-type": content_type})
        try:
            manifest = parse_manifest(body)
        except InvalidManifest as exc:
            raise RegistryError("MANIFEST_INVALID", {"reason": str(exc)}) from None
        digest = Digest.of_bytes(body)
        if isinstance(reference, Digest) and reference != digest:
            raise RegistryError("DIGEST_INVALID", {"expected": str(reference), "got": str(digest)})
        for layer in (manifest.config, *manifest.layers):
            if self.driver.stat(paths.blob_key(layer.digest)) is None:
                raise RegistryError("MANIFEST_BLOB_UNKNOWN", {"digest": str(layer.digest)})
        if self.driver.stat(paths.blob_key(digest)) is None:
            self.driver.put_content(paths.blob_key(digest), body)
        with self.db.session() as session:
            q.record_manifest(session, str(repo), str(digest), content_type.split(";")[0].strip(), len(body))
            if isinstance(reference, str):
                q.set_tag(session, str(repo), reference, str(digest))
        if isinstance(reference, str):
            self.driver.put_content(paths.tag_key(repo.name(self.layout_host, reference)), body)
        log.info("manifest stored", repository=str(repo), reference=str(reference), digest=str(digest))
        return digest

    def delete_manifest(self, repo: Repo, reference: Digest | str) -> None:
        """Delete a tag, or a manifest revision with every tag that names it."""
        if isinstance(reference, str):
            self.get_manifest(repo, reference)
            with self.db.session() as session:
                q.delete_tag(session, str(repo), reference)
            self.driver.delete(paths.tag_key(repo.name(self.layout_host, reference)))
            return
        if self._by_digest(repo, reference) is None:
            raise RegistryError("MANIFEST_UNKNOWN", {"digest": str(reference)})
        for tag in self._stored_tags(repo):
            key = paths.tag_key(repo.name(self.layout_host, tag))
            if Digest.of_bytes(self.driver.get_content(key)) == reference:
                self.driver.delete(key)
        with self.db.session() as session:
            q.delete_manifest(session, str(repo), str(reference))

    # --- listings ---------------------------------------------------------------------------------
    def tags(self, repo: Repo) -> list[str]:
        """Sorted tags; 404 NAME_UNKNOWN for a repository nobody pushed to."""
        with self.db.session() as session:
            found = q.tags(session, str(repo))
        if found is None:
            raise RegistryError("NAME_UNKNOWN", {"name": str(repo)})
        return found

    def catalog(self) -> list[str]:
        """Sorted repositories."""
        with self.db.session() as session:
            return q.repositories(session)

    # --- start-up ---------------------------------------------------------------------------------
    def reconcile(self) -> int:
        """Index the tag files already in storage (a local store, a restored bucket); returns how many."""
        count = 0
        for info in self.driver.walk(paths.layout_prefix(self.layout_host)):
            parts = info.key.split("/")
            if len(parts) != 5:
                continue
            try:
                name = Repo(parts[2], parts[3]).name(self.layout_host, parts[4])
                raw = self.driver.get_content(info.key)
                parse_manifest(raw)
            except (ValueError, PathNotFound):
                continue
            digest, repo = Digest.of_bytes(raw), f"{name.namespace}/{name.model}"
            with self.db.session() as session:
                q.record_manifest(session, repo, str(digest), media_types.MANIFEST, len(raw))
                q.set_tag(session, repo, name.tag, str(digest))
            count += 1
        self._forget_missing_tags()
        return count

    def _forget_missing_tags(self) -> None:
        with self.db.session() as session:
            for repo, tag, _digest in q.all_tags(session):
                namespace, _, model = repo.partition("/")
                if self.driver.stat(paths.tag_key(Repo(namespace, model).name(self.layout_host, tag))) is None:
                    q.delete_tag(session, repo, tag)


def _out_of_order(offset: int) -> RegistryError:
    """416 naming the session's offset, for a chunk that does not start there (or that races another)."""
    return RegistryError("RANGE_INVALID", {"offset": offset}, {"Range": f"0-{offset - 1}"} if offset else {})


def _check_length(size: int, length: int | None) -> None:
    if length is not None and size != length:
        raise RegistryError("SIZE_INVALID", {"expected": length, "got": size})
