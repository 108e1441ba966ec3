"""Build the configured StorageDriver."""

from __future__ import annotations

from corral_registry.settings import StorageSettings
from corral_registry.storage.base import StorageDriver


def make_driver(settings: StorageSettings) -> StorageDriver:
    """filesystem (default), s3 (CORRAL_S3_BUCKET) or inmemory (tests)."""
    if settings.driver == "filesystem":
        from corral_registry.storage.filesystem import FilesystemDriver

        return FilesystemDriver(settings.root)
    if settings.driver == "inmemory":
        from corral_registry.storage.memory import MemoryDriver

        return MemoryDriver()
    if settings.driver == "s3":
        from corral_registry.storage.s3 import S3Config, S3Driver

        if not settings.s3_bucket:
            raise ValueError("CORRAL_REGISTRY_STORAGE=s3 needs CORRAL_S3_BUCKET")
        config = S3Config(bucket=settings.s3_bucket, prefix=settings.s3_prefix,
                          endpoint_url=settings.s3_endpoint_url or None, region=settings.s3_region or None)
        driver = S3Driver(config)
        driver.ensure_bucket()
        return driver
    raise ValueError(f"unknown storage driver {settings.driver!r} (filesystem, s3 or inmemory)")
