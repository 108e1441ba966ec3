"""OrderedHash: the digest of a file filled by parallel parts, read back only where the hash could not keep up."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from corral_common.digest import Digest
from corral_registry.transfer.ordered_hash import OrderedHash

DATA = os.urandom(300_000)


def _write(fd: int, sha: OrderedHash, start: int, position: int, end: int, step: int = 10_000) -> None:
    """A part from ``start`` whose bytes up to ``position`` are on disk already writes on to ``end``."""
    for at in range(position, end, step):
        piece = DATA[at:min(at + step, end)]
        os.pwrite(fd, piece, at)
        sha.wrote(start, at, piece)


def test_a_download_in_one_part_is_hashed_from_memory_only(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "blob", os.O_RDWR | os.O_CREAT)
    sha = OrderedHash(fd)
    _write(fd, sha, 0, 0, len(DATA))
    assert sha.finish(len(DATA)) == (Digest(hashlib.sha256(DATA).hexdigest()), len(DATA))
    assert sha.read_back == 0
    os.close(fd)


def test_parts_ahead_of_the_hash_are_read_back_once_in_order(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "blob", os.O_RDWR | os.O_CREAT)
    sha = OrderedHash(fd)
    _write(fd, sha, 200_000, 200_000, 300_000)  # the last part first: ahead of the hash
    _write(fd, sha, 100_000, 100_000, 150_000)  # half of the middle part
    _write(fd, sha, 0, 0, 100_000)  # the first part: hashed as it lands
    _write(fd, sha, 100_000, 150_000, 200_000)  # the middle part goes on: its first half is read back
    assert sha.finish(len(DATA)) == (Digest(hashlib.sha256(DATA).hexdigest()), len(DATA))
    assert sha.read_back == 50_000 + 100_000  # the middle part's first half, then the last part
    os.close(fd)


def test_a_resumed_download_reads_its_finished_part_from_disk_once(tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(DATA[:120_000])  # what an interrupted pull left behind
    fd = os.open(tmp_path / "blob", os.O_RDWR)
    sha = OrderedHash(fd)
    _write(fd, sha, 0, 120_000, len(DATA))
    assert sha.finish(len(DATA))[0] == Digest(hashlib.sha256(DATA).hexdigest())
    assert sha.read_back == 120_000
    os.close(fd)


def test_a_short_file_hashes_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(DATA[:1000])
    fd = os.open(tmp_path / "blob", os.O_RDWR)
    assert OrderedHash(fd).finish(5000)[1] == 1000
    os.close(fd)
