"""``/api/pull``: manifest, then every missing layer (verified), then the manifest written last.

Statuses as Ollama sends them: ``pulling manifest``; per layer ``pulling <hex12>`` with digest,
total and completed; ``verifying sha256 digest``; ``writing manifest``; ``removing unused
layers`` when an older version left blobs nothing references; ``success``.
"""

from __future__ import annotations

import shutil
from typing import Protocol

import httpx

from corral_common.digest import Digest
from corral_common.errors import BadGateway, InsufficientStorage, NotFound
from corral_common.internal import TransferRequest
from corral_common.logs import get_logger

from corral_registry import media_types
from corral_registry.gc import store_lock
from corral_registry.manifest import MAX_MANIFEST_BYTES, InvalidManifest, Layer, Manifest, parse_manifest
from corral_registry.settings import TransferSettings
from corral_registry.store import ModelStore
from corral_registry.transfer.client import RegistryClient, error_text, read_bounded
from corral_registry.transfer.download import BlobDownloader, PartialState
from corral_registry.transfer.remote import Remote, resolve_remote

log = get_logger("corral.registry.pull")
ACCEPT = ", ".join((media_types.MANIFEST, "application/vnd.oci.image.manifest.v1+json"))


class Reporter(Protocol):
    """Where a transfer reports (``corral_common.jobs.JobReporter``)."""

    def status(self, text: str) -> None:
        """A status line such as ``pulling manifest``."""

    def progress(self, status: str, digest: str, total: int, completed: int) -> None:
        """Bytes done for one layer."""


def fetch_manifest(client: RegistryClient, remote: Remote) -> tuple[bytes, Manifest]:
    """GET the manifest (at most 4 MiB) and validate every digest in it before anything touches disk."""
    try:
        with client.stream("GET", remote.manifest_url(), {"Accept": ACCEPT}) as response:
            return _read_manifest(response)
    except httpx.HTTPError as exc:
        raise BadGateway(f"pull model manifest: {exc or type(exc).__name__}") from None
    except BadGateway as exc:
        if exc.message.startswith("pull model manifest"):
            raise
        raise BadGateway(f"pull model manifest: {exc.message}") from None


def _read_manifest(response: httpx.Response) -> tuple[bytes, Manifest]:
    """Status, bounded body and shape of a manifest answer."""
    if response.status_code == 404:
        raise NotFound("pull model manifest: file does not exist")
    if response.status_code >= 400:
        raise BadGateway(f"pull model manifest: {error_text(response)}")
    raw = read_bounded(response, MAX_MANIFEST_BYTES)
    try:
        manifest = parse_manifest(raw)
    except InvalidManifest as exc:
        raise BadGateway(f"pull model manifest: invalid manifest: {exc}") from None
    if not manifest.layers:
        raise BadGateway("pull model manifest: invalid manifest: no layers")
    return raw, manifest


def unique_layers(manifest: Manifest) -> list[Layer]:
    """Layers then config, each digest once (a duplicate must agree on its size)."""
    seen: dict[Digest, Layer] = {}
    for layer in (*manifest.layers, manifest.config):
        if layer.digest in seen and seen[layer.digest].size != layer.size:
            raise BadGateway(f"pull model manifest: invalid manifest: {layer.digest} listed with two sizes")
        seen.setdefault(layer.digest, layer)
    return list(seen.values())


def check_free_space(store: ModelStore, layers: list[Layer]) -> None:
    """Refuse (507) before downloading when the missing bytes cannot fit on the disk."""
    needed = sum(layer.size - PartialState(store, layer.digest, layer.size).completed()
                 for layer in layers if not store.has_blob(layer.digest))
    free = shutil.disk_usage(store.root).free
    if needed > free:
        raise InsufficientStorage(f"not enough disk space to pull: need {needed} bytes, {free} available")


def pull_model(store: ModelStore, client: RegistryClient, settings: TransferSettings, req: TransferRequest,
               report: Reporter) -> None:
    """Pull one model into the store; raises AppError (nothing is written before the manifest checks out)."""
    remote = resolve_remote(req.model_name(), req.insecure)
    report.status("pulling manifest")
    raw, manifest = fetch_manifest(client, remote)
    layers = unique_layers(manifest)
    with store_lock(store.root, exclusive=False):  # GC waits for pulls: blobs land before their manifest
        _download_and_publish(store, client, settings, remote, raw, manifest, layers, report)


def _download_and_publish(store: ModelStore, client: RegistryClient, settings: TransferSettings, remote: Remote,
                          raw: bytes, manifest: Manifest, layers: list[Layer], report: Reporter) -> None:
    """Every missing layer, verified, then the manifest bytes (last), then unused blobs of the old version."""
    check_free_space(store, layers)
    downloader = BlobDownloader(store, client, settings)
    for layer in layers:
        label = f"pulling {layer.digest.hex[:12]}"

        def progress(done: int, layer: Layer = layer, label: str = label) -> None:
            report.progress(label, str(layer.digest), layer.size, done)

        downloader.fetch(remote, layer.digest, layer.size, progress)
    report.status("verifying sha256 digest")
    for layer in layers:
        if not store.has_blob(layer.digest) or store.blob_path(layer.digest).stat().st_size != layer.size:
            raise BadGateway(f"layer {layer.digest} is missing after download")
    report.status("writing manifest")
    previous = store.get(remote.name)
    store.put_raw_manifest(remote.name, raw)
    if previous is not None and not settings.noprune:
        unused = previous.manifest.all_digests() - manifest.all_digests()
        if unused - store.referenced():
            report.status("removing unused layers")
            store.prune(unused)
    report.status("success")
    log.info("pulled", model=str(remote.name), layers=len(layers))
