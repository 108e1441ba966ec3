"""S3 driver (boto3): multipart uploads that become visible only when completed, aborted on failure."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator

from corral_registry.storage.base import FileInfo, InvalidOffset, PathNotFound, check_key, check_prefix

MIN_PART_SIZE = 5 << 20  # S3's floor for every part but the last


@dataclass(frozen=True)
class S3Config:
    """Where the objects live and how to reach the endpoint."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    part_size: int = 16 << 20
    presign: bool = True


def make_client(config: S3Config) -> Any:
    """A boto3 S3 client with path-style addressing (what MinIO and moto expect)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=config.endpoint_url, region_name=config.region or "us-east-1",
        aws_access_key_id=config.access_key, aws_secret_access_key=config.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"},
                      signature_version="s3v4"),
    )


def _missing(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class S3Writer:
    """Buffers a part; the first full part starts a multipart upload. Nothing is visible before commit."""

    def __init__(self, driver: "S3Driver", key: str) -> None:
        self.driver, self.key, self.size = driver, key, 0
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._done = False

    def write(self, data: bytes) -> int:
        assert not self._done, "writer is closed"
        self._buffer += data
        self.size += len(data)
        part_size = max(self.driver.config.part_size, MIN_PART_SIZE)
        try:
            while len(self._buffer) >= part_size:
                self._upload_part(bytes(self._buffer[:part_size]))
                del self._buffer[:part_size]
        except Exception:
            self.cancel()
            raise
        return len(data)

    def _upload_part(self, body: bytes) -> None:
        s3, bucket = self.driver.s3, self.driver.config.bucket
        if self._upload_id is None:
            self._upload_id = s3.create_multipart_upload(Bucket=bucket, Key=self.key)["UploadId"]
        number = len(self._parts) + 1
        answer = s3.upload_part(Bucket=bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=body)
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})

    def commit(self) -> None:
        assert not self._done, "writer is closed"
        s3, bucket = self.driver.s3, self.driver.config.bucket
        try:
            if self._upload_id is None:
                s3.put_object(Bucket=bucket, Key=self.key, Body=bytes(self._buffer))
            else:
                if self._buffer:
                    self._upload_part(bytes(self._buffer))
                s3.complete_multipart_upload(Bucket=bucket, Key=self.key, UploadId=self._upload_id,
                                             MultipartUpload={"Parts": self._parts})
        except Exception:
            self.cancel()
            raise
        self._buffer, self._done = bytearray(), True

    def cancel(self) -> None:
        if self._upload_id is not None and not self._done:
            try:
                self.driver.s3.abort_multipart_upload(Bucket=self.driver.config.bucket, Key=self.key,
                                                      UploadId=self._upload_id)
            except Exception:  # noqa: BLE001 - best effort; a lifecycle rule reaps leftovers
                pass
        self._buffer, self._done = bytearray(), True

    def __enter__(self) -> "S3Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.cancel()


class S3Driver:
    """Objects in one bucket, under an optional prefix."""

    name = "s3"
    can_append = False  # upload sessions keep one object per chunk here

    def appender(self, key: str, offset: int) -> S3Writer:
        raise NotImplementedError("S3 objects cannot be extended in place")

    def __init__(self, config: S3Config, client: Any = None) -> None:
        self.config = config
        self.s3 = client or make_client(config)
        self._root = config.prefix.strip("/")

    def _key(self, key: str) -> str:
        key = check_key(key)
        return f"{self._root}/{key}" if self._root else key

    def _prefix(self, prefix: str) -> str:
        prefix = check_prefix(prefix).rstrip("/")
        full = "/".join(p for p in (self._root, prefix) if p)
        return full + "/" if full else ""

    def _relative(self, full: str) -> str:
        return full[len(self._root) + 1:] if self._root else full

    def get_content(self, key: str) -> bytes:
        try:
            return self.s3.get_object(Bucket=self.config.bucket, Key=self._key(key))["Body"].read()
        except Exception as exc:
            if _missing(exc):
                raise PathNotFound(key) from None
            raise

    def put_content(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.config.bucket, Key=self._key(key), Body=data)

    def reader(self, key: str, offset: int = 0) -> BinaryIO:
        info = self.stat(key)
        if info is None:
            raise PathNotFound(key)
        if offset < 0 or offset > info.size:
            raise InvalidOffset(f"{key}: offset {offset} beyond size {info.size}")
        if offset == info.size:
            return io.BytesIO(b"")
        answer = self.s3.get_object(Bucket=self.config.bucket, Key=self._key(key), Range=f"bytes={offset}-")
        return answer["Body"]

    def writer(self, key: str) -> S3Writer:
        return S3Writer(self, self._key(key))

    def stat(self, key: str) -> FileInfo | None:
        try:
            head = self.s3.head_object(Bucket=self.config.bucket, Key=self._key(key))
        except Exception as exc:
            if _missing(exc):
                return None
            raise
        return FileInfo(key, int(head["ContentLength"]), head["LastModified"].timestamp())

    def _pages(self, prefix: str, delimiter: bool) -> Iterator[dict[str, Any]]:
        paginator = self.s3.get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": self.config.bucket, "Prefix": self._prefix(prefix)}
        if delimiter:
            kwargs["Delimiter"] = "/"
        yield from paginator.paginate(**kwargs)

    def list(self, prefix: str) -> list[str]:
        found: set[str] = set()
        for page in self._pages(prefix, delimiter=True):
            found.update(self._relative(o["Key"]) for o in page.get("Contents", []))
            found.update(self._relative(p["Prefix"]).rstrip("/") for p in page.get("CommonPrefixes", []))
        if not found:
            raise PathNotFound(prefix)
        return sorted(found)

    def walk(self, prefix: str) -> Iterator[FileInfo]:
        for page in self._pages(prefix, delimiter=False):
            for obj in page.get("Contents", []):
                yield FileInfo(self._relative(obj["Key"]), int(obj["Size"]), obj["LastModified"].timestamp())

    def move(self, source: str, destination: str) -> None:
        if self.stat(source) is None:
            raise PathNotFound(source)
        # The managed copy switches to multipart copy above 5 GB, which a single CopyObject cannot do.
        self.s3.copy({"Bucket": self.config.bucket, "Key": self._key(source)}, self.config.bucket,
                     self._key(destination))
        self.s3.delete_object(Bucket=self.config.bucket, Key=self._key(source))

    def delete(self, key: str) -> None:
        if self.stat(key) is not None:
            self.s3.delete_object(Bucket=self.config.bucket, Key=self._key(key))
            return
        keys = [self._key(info.key) for info in self.walk(key)]
        if not keys:
            raise PathNotFound(key)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            self.s3.delete_objects(Bucket=self.config.bucket, Delete={"Objects": batch, "Quiet": True})

    def url_for(self, key: str, expires_seconds: int = 1200) -> str | None:
        if not self.config.presign:
            return None
        return self.s3.generate_presigned_url("get_object", Params={"Bucket": self.config.bucket,
                                                                    "Key": self._key(key)},
                                              ExpiresIn=expires_seconds)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (tests and first start against MinIO)."""
        try:
            self.s3.head_bucket(Bucket=self.config.bucket)
        except Exception as exc:
            if not _missing(exc) and "NoSuchBucket" not in str(exc):
                raise
            self.s3.create_bucket(Bucket=self.config.bucket)
