"""Garbage collection of unreferenced blobs: mark every digest a manifest names, sweep the rest.

Safety rules (distribution's GC runs stop-the-world; this one runs beside live traffic):
- a blob younger than the grace period is kept (it may belong to a manifest not written yet);
- the run is skipped while an upload session moved within the grace period (a push in progress)
  or while a pull holds the store's shared lock (a pull writes its manifest after its blobs);
- if any manifest cannot be parsed nothing is deleted (as Ollama skips pruning then).
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from corral_common import store_paths as paths
from corral_common.digest import Digest
from corral_common.logs import get_logger

from corral_registry.db import Database
from corral_registry.db import queries as q
from corral_registry.manifest import InvalidManifest, parse_manifest
from corral_registry.settings import RegistrySettings
from corral_registry.storage import PathNotFound, StorageDriver

log = get_logger("corral.registry.gc")
LOCK_NAME = ".gc.lock"


class GcAborted(Exception):
    """Collection cannot proceed safely (a corrupt manifest)."""


@dataclass
class GcReport:
    """What a run found and did."""

    dry_run: bool
    skipped: str = ""
    marked: int = 0
    deleted: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    kept_young: int = 0
    uploads_purged: int = 0

    def to_json(self) -> dict[str, Any]:
        """The Celery task's return value."""
        return asdict(self)


@contextmanager
def store_lock(root: Path, exclusive: bool) -> Iterator[bool]:
    """The store's GC lock: pulls hold it shared, GC exclusively without waiting (yields False if busy)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_EX | fcntl.LOCK_NB) if exclusive else fcntl.LOCK_SH)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _add_manifest(live: set[Digest], raw: bytes, where: str) -> None:
    try:
        manifest = parse_manifest(raw)
    except InvalidManifest as exc:
        raise GcAborted(f"manifest {where} is unreadable ({exc}); not collecting") from None
    live.add(Digest.of_bytes(raw))
    live.update(manifest.all_digests())


def mark(driver: StorageDriver, db: Database | None) -> set[Digest]:
    """Every digest referenced by a tag file (any layout host) or a manifest revision in the DB."""
    live: set[Digest] = set()
    for info in driver.walk(paths.MANIFESTS):
        if info.key.count("/") == 4:
            _add_manifest(live, driver.get_content(info.key), info.key)
    if db is not None:
        with db.session() as session:
            revisions = q.manifest_digests(session)
        for text in revisions:
            digest = Digest.parse(text)
            try:
                _add_manifest(live, driver.get_content(paths.blob_key(digest)), text)
            except PathNotFound:
                continue
    return live


def _pushes_in_progress(db: Database | None, grace: float) -> bool:
    if db is None:
        return False
    with db.session() as session:
        moved = [when for _id, when in q.uploads(session)]
    return any(time.time() - when.timestamp() < grace for when in moved)


def _purge_uploads(driver: StorageDriver, db: Database | None, max_age: float, dry_run: bool) -> int:
    """Abandoned upload sessions (no chunk for ``max_age``) and their chunks."""
    if db is None:
        return 0
    with db.session() as session:
        stale = q.stale_uploads(session, timedelta(seconds=max_age))
        if not dry_run:
            for upload_id in stale:
                q.delete_upload(session, upload_id)
    if not dry_run:
        for upload_id in stale:
            try:
                driver.delete(f"{paths.UPLOADS}/{upload_id}")
            except PathNotFound:
                pass
    return len(stale)


def collect(driver: StorageDriver, db: Database | None, grace_seconds: float, dry_run: bool = False,
            upload_max_age: float = 7 * 24 * 3600.0) -> GcReport:
    """One mark-and-sweep pass over the storage."""
    report = GcReport(dry_run=dry_run)
    if _pushes_in_progress(db, grace_seconds):
        report.skipped = "an upload is in progress"
        return report
    try:
        live = mark(driver, db)
    except GcAborted as exc:
        report.skipped = str(exc)
        return report
    report.marked, now = len(live), time.time()
    for info in list(driver.walk(paths.BLOBS)):
        digest = paths.digest_of_blob_key(info.key)
        if digest is None or digest in live:
            continue
        if now - info.modified < grace_seconds:
            report.kept_young += 1
            continue
        if not dry_run:
            try:
                driver.delete(info.key)
            except PathNotFound:
                continue
        report.deleted.append(str(digest))
        report.freed_bytes += info.size
    report.uploads_purged = _purge_uploads(driver, db, upload_max_age, dry_run)
    log.info("garbage collected", dry_run=dry_run, deleted=len(report.deleted), freed_bytes=report.freed_bytes,
             kept_young=report.kept_young, skipped=report.skipped or None)
    return report


def collect_registry(settings: RegistrySettings, dry_run: bool = False, grace_seconds: float | None = None) -> GcReport:
    """GC of the /v2 registry's storage as configured (CORRAL_REGISTRY_DATA or S3)."""
    from corral_registry.storage.factory import make_driver

    grace = settings.gc_grace_seconds if grace_seconds is None else grace_seconds
    driver = make_driver(settings.storage)
    db = Database(settings.registry_database_url())
    try:
        if settings.storage.driver != "filesystem":
            return collect(driver, db, grace, dry_run, settings.upload_max_age_seconds)
        with store_lock(settings.storage.root, exclusive=True) as free:
            if not free:
                return GcReport(dry_run=dry_run, skipped="a pull is in progress")
            return collect(driver, db, grace, dry_run, settings.upload_max_age_seconds)
    finally:
        db.close()


def prune_models(models_dir: Path, dry_run: bool = False, grace_seconds: float = 3600.0) -> GcReport:
    """GC of a local model store (OLLAMA_MODELS): blobs no manifest references."""
    from corral_registry.storage.filesystem import FilesystemDriver

    with store_lock(models_dir, exclusive=True) as free:
        if not free:
            return GcReport(dry_run=dry_run, skipped="a pull is in progress")
        return collect(FilesystemDriver(models_dir), None, grace_seconds, dry_run)
