"""The download's stream ramp and its background write-back, without a network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral_registry.transfer.streams import Ramp
from corral_registry.transfer.writeback import Writeback


def test_the_ramp_doubles_while_more_streams_pay_off_and_stops_at_the_part_count() -> None:
    ramp = Ramp(limit=16)
    assert ramp.streams == 2
    assert ramp.step(10.0) == 2  # the first interval is connection setup: not judged
    assert [ramp.step(rate) for rate in (100.0, 200.0, 390.0, 700.0)] == [4, 8, 16, 16]
    assert ramp.settled and ramp.step(1.0) == 16


def test_the_ramp_falls_back_to_the_last_count_that_helped() -> None:
    ramp = Ramp(limit=16)
    ramp.step(0.0)
    assert ramp.step(400.0) == 4
    assert ramp.step(420.0) == 2  # four streams were not a fifth faster than two
    assert ramp.settled and ramp.step(10_000.0) == 2


def test_a_blob_with_fewer_parts_than_the_start_uses_one_stream_per_part() -> None:
    ramp = Ramp(limit=1)
    assert ramp.streams == 1 and ramp.settled


def test_a_failed_background_sync_is_raised_when_the_download_closes_it(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "blob", os.O_RDWR | os.O_CREAT, 0o644)
    os.close(fd)  # every fdatasync on it now fails (EBADF), as a write-back error would
    writeback = Writeback(fd, every=1)
    writeback.wrote(1)
    with pytest.raises(OSError):
        writeback.close()
    writeback.close()  # reported once
