"""One conformance suite for every StorageDriver: filesystem, in-memory and S3 (moto on loopback)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral_common.testing.backends import moto_server
from corral_common.testing.threads import run_together
from corral_registry.storage import InvalidKey, InvalidOffset, ObjectBusy, PathNotFound, StorageDriver
from corral_registry.storage.filesystem import FilesystemDriver
from corral_registry.storage.memory import MemoryDriver
from corral_registry.testing import s3_driver

DRIVERS = ["filesystem", "inmemory", "s3"]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> StorageDriver:
    if request.param == "filesystem":
        return FilesystemDriver(tmp_path / "root")
    if request.param == "inmemory":
        return MemoryDriver()
    return s3_driver(request.getfixturevalue("s3_endpoint"))


def _data(size: int, seed: int = 1) -> bytes:
    block = bytes((i * 31 + seed) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def test_put_then_get_round_trips(driver: StorageDriver) -> None:
    driver.put_content("a/b/c", b"hello")
    assert driver.get_content("a/b/c") == b"hello"


def test_put_replaces_the_whole_object(driver: StorageDriver) -> None:
    driver.put_content("k", b"a much longer first version")
    driver.put_content("k", b"short")
    assert driver.get_content("k") == b"short"


def test_empty_objects_exist(driver: StorageDriver) -> None:
    driver.put_content("empty", b"")
    assert driver.get_content("empty") == b""
    info = driver.stat("empty")
    assert info is not None and info.size == 0


def test_missing_objects_raise_path_not_found(driver: StorageDriver) -> None:
    with pytest.raises(PathNotFound):
        driver.get_content("nothing/here")
    with pytest.raises(PathNotFound):
        driver.reader("nothing/here")
    with pytest.raises(PathNotFound):
        driver.delete("nothing/here")
    with pytest.raises(PathNotFound):
        driver.move("nothing/here", "elsewhere")
    with pytest.raises(PathNotFound):
        driver.list("nothing")
    assert driver.stat("nothing/here") is None
    assert list(driver.walk("nothing")) == []


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "..", ".hidden", "a/.tmp", "a/b/", "sp ace",
                                 "new\nline", "back\\slash", "a/%2e%2e"])
def test_keys_outside_the_grammar_are_refused(driver: StorageDriver, key: str) -> None:
    with pytest.raises(InvalidKey):
        driver.put_content(key, b"x")
    with pytest.raises(InvalidKey):
        driver.get_content(key)


def test_keys_with_ports_colons_and_dots_are_fine(driver: StorageDriver) -> None:
    key = "manifests/127.0.0.1:5000/team/model.v2/v1.0"
    driver.put_content(key, b"m")
    assert driver.get_content(key) == b"m"


def test_reader_starts_at_offsets(driver: StorageDriver) -> None:
    data = _data(10_000)
    driver.put_content("blob", data)
    for offset in (0, 1, 4096, 9_999, 10_000):
        with driver.reader("blob", offset) as stream:
            assert stream.read() == data[offset:]
    with pytest.raises(InvalidOffset):
        driver.reader("blob", 10_001)


def test_writer_content_is_invisible_until_commit(driver: StorageDriver) -> None:
    data = _data(300_000)
    with driver.writer("w/obj") as writer:
        for start in range(0, len(data), 70_000):
            writer.write(data[start:start + 70_000])
        assert writer.size == len(data)
        assert driver.stat("w/obj") is None
        writer.commit()
    assert driver.get_content("w/obj") == data


def test_writer_cancel_and_exit_without_commit_leave_nothing(driver: StorageDriver) -> None:
    with driver.writer("w/cancelled") as writer:
        writer.write(b"abc")
        writer.cancel()
    with driver.writer("w/abandoned") as writer:
        writer.write(b"abc")
    assert driver.stat("w/cancelled") is None and driver.stat("w/abandoned") is None
    assert [info.key for info in driver.walk("")] == []


def test_writer_does_not_disturb_an_existing_object_until_commit(driver: StorageDriver) -> None:
    driver.put_content("obj", b"old")
    with driver.writer("obj") as writer:
        writer.write(b"new content")
        assert driver.get_content("obj") == b"old"
    assert driver.get_content("obj") == b"old"


def test_large_writes_span_several_parts(driver: StorageDriver) -> None:
    data = _data(12 << 20, seed=7)  # > two S3 parts of 5 MiB
    with driver.writer("big") as writer:
        for start in range(0, len(data), 1 << 20):
            writer.write(data[start:start + (1 << 20)])
        writer.commit()
    info = driver.stat("big")
    assert info is not None and info.size == len(data)
    with driver.reader("big", 6 << 20) as stream:
        assert stream.read() == data[6 << 20:]


def _append(driver: StorageDriver, key: str, offset: int, data: bytes, commit: bool = True) -> None:
    with driver.appender(key, offset) as writer:
        writer.write(data)
        if commit:
            writer.commit()


def test_appender_extends_in_place_and_cancel_cuts_back(driver: StorageDriver) -> None:
    if not driver.can_append:
        pytest.skip(f"{driver.name} keeps upload chunks as objects of their own")
    _append(driver, "up/data", 0, b"abc")
    _append(driver, "up/data", 3, b"def")
    assert driver.get_content("up/data") == b"abcdef"
    _append(driver, "up/data", 6, b"zzz", commit=False)  # a failed chunk leaves the object as it was
    assert driver.get_content("up/data") == b"abcdef"
    _append(driver, "up/data", 3, b"XY")  # bytes past the offset (a crashed chunk's tail) are dropped
    assert driver.get_content("up/data") == b"abcXY"
    with driver.appender("up/data", 5):
        pass  # holding it and writing nothing changes nothing
    driver.move("up/data", "blob")
    assert driver.get_content("blob") == b"abcXY"


def test_appender_refuses_gaps_missing_objects_and_a_second_holder(driver: StorageDriver) -> None:
    if not driver.can_append:
        pytest.skip(f"{driver.name} keeps upload chunks as objects of their own")
    _append(driver, "up/data", 0, b"abc")
    with pytest.raises(InvalidOffset):
        driver.appender("up/data", 4)
    with pytest.raises(PathNotFound):
        driver.appender("up/missing", 3)
    with driver.appender("up/data", 3) as holder:
        with pytest.raises(ObjectBusy):
            driver.appender("up/data", 3)
        holder.write(b"d")
        holder.commit()
    _append(driver, "up/data", 4, b"e")
    assert driver.get_content("up/data") == b"abcde"


def test_stat_reports_size_and_time(driver: StorageDriver) -> None:
    driver.put_content("dir/file", b"12345")
    info = driver.stat("dir/file")
    assert info is not None and info.size == 5 and info.key == "dir/file" and info.modified > 0
    assert driver.stat("dir") is None  # a prefix is not an object


def test_list_gives_direct_children_and_walk_everything(driver: StorageDriver) -> None:
    for key in ("r/a", "r/b/c", "r/b/d/e", "other/x"):
        driver.put_content(key, key.encode())
    assert driver.list("r") == ["r/a", "r/b"]
    assert driver.list("r/b") == ["r/b/c", "r/b/d"]
    assert sorted(driver.list("")) == ["other", "r"]
    walked = {info.key: info.size for info in driver.walk("r")}
    assert walked == {"r/a": 3, "r/b/c": 5, "r/b/d/e": 7}
    assert {info.key for info in driver.walk("")} == {"r/a", "r/b/c", "r/b/d/e", "other/x"}


def test_move_renames_and_replaces(driver: StorageDriver) -> None:
    driver.put_content("src", b"new")
    driver.put_content("dst/x", b"old")
    driver.move("src", "dst/x")
    assert driver.get_content("dst/x") == b"new"
    assert driver.stat("src") is None


def test_delete_removes_objects_and_prefixes(driver: StorageDriver) -> None:
    for key in ("d/a", "d/b/c", "keep"):
        driver.put_content(key, b"x")
    driver.delete("d/a")
    assert driver.stat("d/a") is None and driver.stat("d/b/c") is not None
    driver.delete("d")
    assert [info.key for info in driver.walk("")] == ["keep"]


def test_concurrent_writers_to_one_key_leave_one_whole_version(driver: StorageDriver) -> None:
    versions = [_data(200_000, seed=s) for s in range(4)]

    def write(data: bytes) -> None:
        with driver.writer("race") as writer:
            for start in range(0, len(data), 50_000):
                writer.write(data[start:start + 50_000])
            writer.commit()

    assert run_together(write, [(v,) for v in versions]) == []
    assert driver.get_content("race") in versions


def test_url_for_presigns_only_where_the_store_can(driver: StorageDriver) -> None:
    driver.put_content("blobs/x", b"direct bytes")
    url = driver.url_for("blobs/x")
    if driver.name == "s3":
        assert url is not None
        assert httpx.get(url, trust_env=False).content == b"direct bytes"
        ranged = httpx.get(url, headers={"Range": "bytes=7-"}, trust_env=False)
        assert ranged.status_code == 206 and ranged.content == b"bytes"
    else:
        assert url is None


def test_filesystem_leaves_no_temp_files(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "root")
    driver.put_content("a/b", b"x")
    with driver.writer("a/c") as writer:
        writer.write(b"y")
    assert sorted(os.listdir(tmp_path / "root" / "a")) == ["b"]


def test_s3_failed_commit_aborts_the_multipart_upload(s3_endpoint: str) -> None:
    driver = s3_driver(s3_endpoint)
    writer = driver.writer("broken")
    writer.write(_data(6 << 20))  # one part sent: a multipart upload is open
    upload_id = writer._upload_id
    assert upload_id is not None
    writer._parts.append({"ETag": '"bogus"', "PartNumber": 99})  # completing will fail
    with pytest.raises(Exception):
        writer.commit()
    uploads = driver.s3.list_multipart_uploads(Bucket=driver.config.bucket).get("Uploads", [])
    assert upload_id not in [u["UploadId"] for u in uploads]
    assert driver.stat("broken") is None
