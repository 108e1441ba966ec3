"""Blob uploads to a registry: HEAD first, cross-repository mount, chunked PATCH with resume, PUT ``?digest=``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from corral_common.digest import Digest
from corral_common.errors import BadGateway
from corral_common.logs import get_logger
from corral_common.names import InvalidName, ModelName

from corral_registry.manifest import Layer
from corral_registry.settings import TransferSettings
from corral_registry.transfer.client import Answer, RegistryClient
from corral_registry.transfer.remote import Remote

log = get_logger("corral.registry.upload")
Progress = Callable[[int], None]
READ_BLOCK = 1 << 20


def chunk_size(total: int, settings: TransferSettings) -> int:
    """total/16 clamped to [part_min, part_max], like pull's parts."""
    return max(min(max(total // settings.max_parts, settings.part_min), settings.part_max), 1)


def _file_range(path: Path, start: int, length: int, sent: Callable[[int], None]) -> Callable[[], Iterator[bytes]]:
    """A re-creatable body: ``length`` bytes of the file from ``start`` (re-read if a request is retried)."""

    def body() -> Iterator[bytes]:
        with open(path, "rb") as handle:
            handle.seek(start)
            left = length
            while left > 0:
                block = handle.read(min(READ_BLOCK, left))
                if not block:
                    return
                left -= len(block)
                sent(len(block))
                yield block

    return body


class BlobUploader:
    """Pushes one blob of the local store to a remote repository."""

    def __init__(self, client: RegistryClient, settings: TransferSettings) -> None:
        self.client, self.settings = client, settings

    def push(self, remote: Remote, layer: Layer, path: Path, progress: Progress) -> None:
        """Make the registry hold the blob; progress gets the bytes confirmed so far."""
        repo = remote.name.repository()
        head = self.client.call("HEAD", remote.blob_url(layer.digest))
        if head.status_code == 200:
            progress(layer.size)
            return
        url = httpx.URL(remote.url(f"/v2/{repo}/blobs/uploads/"))
        source = mount_source(remote, layer)
        if source is not None:
            url = url.copy_merge_params({"mount": str(layer.digest), "from": source})
        response = self.client.call("POST", url, content=b"")
        if response.status_code == 201:
            progress(layer.size)
            return
        if response.status_code != 202:
            raise BadGateway(f"upload {layer.digest}: {response.error}")
        location = self._location(remote, response)
        location = self._send_chunks(remote, layer, path, location, progress)
        self._commit(location, layer.digest)
        progress(layer.size)

    @staticmethod
    def _location(remote: Remote, response: Answer) -> httpx.URL:
        where = response.headers.get("docker-upload-location") or response.headers.get("location")
        if not where:
            raise BadGateway("registry did not say where to upload")
        return httpx.URL(remote.base_url).join(where)

    def _send_chunks(self, remote: Remote, layer: Layer, path: Path, location: httpx.URL,
                     progress: Progress) -> httpx.URL:
        size, offset = chunk_size(layer.size, self.settings), 0
        failures = 0
        while offset < layer.size:
            length = min(size, layer.size - offset)
            sent = [offset]

            def count(n: int, sent: list[int] = sent) -> None:
                sent[0] += n
                progress(sent[0])

            try:
                location = self._patch(location, path, offset, length, count)
                offset += length
                failures = 0
            except (httpx.TransportError, _ChunkRefused) as exc:
                failures += 1
                if failures > self.settings.retries:
                    raise BadGateway(f"upload of {layer.digest} failed: {exc}") from None
                offset = self._resume_offset(location)
                log.info("upload chunk failed, resuming", digest=str(layer.digest), offset=offset, error=str(exc))
            progress(offset)
        return location

    def _patch(self, location: httpx.URL, path: Path, offset: int, length: int,
               count: Callable[[int], None]) -> httpx.URL:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length),
                   "Content-Range": f"{offset}-{offset + length - 1}", "X-Redirect-Uploads": "1"}
        response = self.client.call("PATCH", location, headers, _file_range(path, offset, length, count))
        if response.status_code == 307 and "location" in response.headers:
            redirect = location.join(response.headers["location"])
            put = self.client.call("PUT", redirect, {"Content-Length": str(length)},
                                   _file_range(path, offset, length, lambda n: None), auth=False)
            if put.status_code >= 400:
                raise _ChunkRefused(f"redirected upload: {put.error}")
            return location
        if response.status_code == 416 or response.status_code >= 500:
            raise _ChunkRefused(response.error)
        if response.status_code >= 400:
            raise BadGateway(f"upload chunk: {response.error}")
        next_location = response.headers.get("docker-upload-location") or response.headers.get("location")
        return location.join(next_location) if next_location else location

    def _resume_offset(self, location: httpx.URL) -> int:
        """Ask the session how much it holds (``Range: 0-<last>``) to continue from there."""
        response = self.client.call("GET", location)
        if response.status_code not in (200, 204):
            raise BadGateway(f"upload session lost: {response.error}")
        span = response.headers.get("range", "")
        try:
            last = int(span.split("-")[1])
        except (IndexError, ValueError):
            return 0
        return last + 1 if span != "0-0" else 0

    def _commit(self, location: httpx.URL, digest: Digest) -> None:
        response = self.client.call("PUT", location.copy_merge_params({"digest": str(digest)}),
                                    {"Content-Length": "0"}, b"")
        if response.status_code not in (201, 204):
            raise BadGateway(f"upload {digest}: {response.error}")


class _ChunkRefused(Exception):
    """A chunk the registry did not take (416 out of order, 5xx): resume from the session's offset."""


def mount_source(remote: Remote, layer: Layer) -> str | None:
    """``ns/model`` of the model a layer came from, when it lives on the same registry (mount candidate)."""
    if not layer.from_:
        return None
    try:
        source = ModelName.parse(layer.from_)
    except InvalidName:
        return None
    if source.host.lower() != remote.name.host.lower() or source.repository() == remote.name.repository():
        return None
    return source.repository()
