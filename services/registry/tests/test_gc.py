"""Garbage collection of the registry storage and of a local model store."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from corral_common import store_paths as paths
from corral_common.digest import Digest
from corral_registry.db import Database
from corral_registry.gc import collect, collect_registry, prune_models, store_lock
from corral_registry.settings import RegistrySettings, StorageSettings
from corral_registry.storage.filesystem import FilesystemDriver
from corral_registry.testing import digest_of
from corral_registry.v2.names import Repo
from corral_registry.v2.service import Registry

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(FilesystemDriver(tmp_path / "data"), Database(f"sqlite:///{tmp_path / 'data' / 'registry.db'}"),
                    "registry.ollama.ai")


def put_blob(registry: Registry, data: bytes) -> Digest:
    registry.driver.put_content(paths.blob_key(Digest.parse(digest_of(data))), data)
    return Digest.parse(digest_of(data))


def manifest(registry: Registry, layers: list[bytes]) -> bytes:
    config = put_blob(registry, b"{}")
    body = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": "c", "digest": str(config), "size": 2},
            "layers": [{"mediaType": "m", "digest": str(put_blob(registry, d)), "size": len(d)} for d in layers]}
    return json.dumps(body).encode()


def test_unreferenced_blobs_are_deleted_and_referenced_ones_kept(registry: Registry) -> None:
    body = manifest(registry, [b"kept layer"])
    registry.put_manifest(Repo("team", "m"), "v1", body, MANIFEST_TYPE)
    orphan = put_blob(registry, b"orphan")
    report = collect(registry.driver, registry.db, grace_seconds=0)
    assert report.deleted == [str(orphan)]
    assert registry.driver.stat(paths.blob_key(orphan)) is None
    assert registry.get_manifest(Repo("team", "m"), "v1")[0] == body
    assert registry.blob_info(Digest.parse(digest_of(b"kept layer"))).size == 10
    assert registry.blob_info(Digest.of_bytes(body)).size == len(body)  # the manifest revision itself


def test_young_blobs_survive_the_grace_period(registry: Registry) -> None:
    orphan = put_blob(registry, b"just uploaded")
    report = collect(registry.driver, registry.db, grace_seconds=3600)
    assert report.deleted == [] and report.kept_young == 1
    assert registry.driver.stat(paths.blob_key(orphan)) is not None


def test_dry_run_reports_without_deleting(registry: Registry) -> None:
    orphan = put_blob(registry, b"orphan")
    report = collect(registry.driver, registry.db, grace_seconds=0, dry_run=True)
    assert report.deleted == [str(orphan)] and report.freed_bytes == 6
    assert registry.driver.stat(paths.blob_key(orphan)) is not None


def test_manifests_pushed_by_digest_only_keep_their_blobs(registry: Registry) -> None:
    body = manifest(registry, [b"untagged layer"])
    registry.put_manifest(Repo("team", "m"), Digest.of_bytes(body), body, MANIFEST_TYPE)
    assert collect(registry.driver, registry.db, grace_seconds=0).deleted == []


def test_a_running_upload_postpones_collection(registry: Registry) -> None:
    orphan = put_blob(registry, b"first layer of a push")
    registry.start_upload(Repo("team", "m"))
    report = collect(registry.driver, registry.db, grace_seconds=3600)
    assert report.skipped == "an upload is in progress"
    assert collect(registry.driver, registry.db, grace_seconds=0).deleted == [str(orphan)]


def test_abandoned_upload_sessions_are_purged(registry: Registry) -> None:
    upload = registry.start_upload(Repo("team", "m"))

    async def body():
        yield b"chunk"

    asyncio.run(registry.append(upload, 0, body(), 5))
    report = collect(registry.driver, registry.db, grace_seconds=0, upload_max_age=0)
    assert report.uploads_purged == 1
    assert list(registry.driver.walk(paths.UPLOADS)) == []


def test_a_corrupt_manifest_stops_collection(registry: Registry) -> None:
    orphan = put_blob(registry, b"orphan")
    registry.driver.put_content("manifests/registry.ollama.ai/team/m/broken", b"{not json")
    report = collect(registry.driver, registry.db, grace_seconds=0)
    assert "unreadable" in report.skipped and report.deleted == []
    assert registry.driver.stat(paths.blob_key(orphan)) is not None


def test_collection_waits_for_pulls_holding_the_store(tmp_path: Path) -> None:
    settings = RegistrySettings(models_dir=tmp_path / "models", home=tmp_path / "home",
                                registry_data=tmp_path / "data",
                                storage=StorageSettings(driver="filesystem", root=tmp_path / "data"))
    FilesystemDriver(tmp_path / "data").put_content(paths.blob_key(Digest.of_bytes(b"o")), b"o")
    held, release = threading.Event(), threading.Event()

    def pulling() -> None:
        with store_lock(tmp_path / "data", exclusive=False):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=pulling)
    thread.start()
    held.wait(5)
    try:
        assert collect_registry(settings, grace_seconds=0).skipped == "a pull is in progress"
    finally:
        release.set()
        thread.join()
    assert collect_registry(settings, grace_seconds=0).deleted == [str(Digest.of_bytes(b"o"))]


def test_prune_models_keeps_every_host_of_a_local_store(tmp_path: Path) -> None:
    store = FilesystemDriver(tmp_path / "models")
    registry = Registry(store, Database(f"sqlite:///{tmp_path / 'x.db'}"), "registry.ollama.ai")
    pulled = manifest(registry, [b"pulled from a private registry"])
    store.put_content("manifests/127.0.0.1:5000/team/m/v1", pulled)
    orphan = put_blob(registry, b"orphan")
    report = prune_models(tmp_path / "models", grace_seconds=0)
    assert report.deleted == [str(orphan)]
