"""``/api/push``: every blob the registry lacks, then the manifest bytes exactly as stored locally.

Statuses as Ollama sends them: ``retrieving manifest`` (``couldn't retrieve manifest`` when the
model is not here), per layer ``pushing <hex12>`` with digest, total and completed, ``pushing
manifest``, ``success``.
"""

from __future__ import annotations

from corral_common.errors import BadGateway, NotFound
from corral_common.internal import TransferRequest
from corral_common.logs import get_logger

from corral_registry import media_types
from corral_registry.pull import Reporter
from corral_registry.settings import TransferSettings
from corral_registry.store import ModelStore, StoredModel
from corral_registry.transfer.client import RegistryClient
from corral_registry.transfer.remote import Remote, resolve_remote
from corral_registry.transfer.upload import BlobUploader

log = get_logger("corral.registry.push")


def local_model(store: ModelStore, remote: Remote) -> StoredModel:
    """The stored model a push sends; 404 ``model '<name>' not found`` when it is not here."""
    stored = store.get(remote.name)
    if stored is None:
        raise NotFound(f"model '{remote.name.display_shortest()}' not found")
    return stored


def push_model(store: ModelStore, client: RegistryClient, settings: TransferSettings, req: TransferRequest,
               report: Reporter) -> None:
    """Push one local model to the registry its name points at."""
    remote = resolve_remote(req.model_name(), req.insecure)
    report.status("retrieving manifest")
    try:
        stored = local_model(store, remote)
    except NotFound:
        report.status("couldn't retrieve manifest")
        raise
    uploader = BlobUploader(client, settings)
    seen = set()
    for layer in (*stored.manifest.layers, stored.manifest.config):
        if layer.digest in seen:
            continue
        seen.add(layer.digest)
        label = f"pushing {layer.digest.hex[:12]}"
        report.progress(label, str(layer.digest), layer.size, 0)

        def progress(done: int, layer=layer, label: str = label) -> None:  # noqa: ANN001
            report.progress(label, str(layer.digest), layer.size, min(done, layer.size))

        uploader.push(remote, layer, store.blob_path(layer.digest), progress)
    report.status("pushing manifest")
    response = client.call("PUT", remote.manifest_url(), {"Content-Type": media_types.MANIFEST}, stored.raw)
    if response.status_code not in (200, 201, 202):
        raise BadGateway(f"push manifest: {response.error}")
    report.status("success")
    log.info("pushed", model=str(remote.name))
