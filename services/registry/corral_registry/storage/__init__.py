"""Blob storage behind one StorageDriver protocol: filesystem, S3 and in-memory drivers."""

from corral_registry.storage.base import (FileInfo, FileWriter, InvalidKey, InvalidOffset, ObjectBusy, PathNotFound,
                                          StorageDriver, StorageError)

__all__ = ["FileInfo", "FileWriter", "InvalidKey", "InvalidOffset", "ObjectBusy", "PathNotFound", "StorageDriver",
           "StorageError"]
