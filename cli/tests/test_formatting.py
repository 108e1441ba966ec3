"""What sizes, counts, durations and times look like."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from corral_cli.formatting import go_duration, human_bytes, human_number, human_time, parse_time, processor, until

NOW = datetime(2025, 5, 10, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("size", "text"), [
    (98362432, "98 MB"), (4_661_216_384, "4.7 GB"), (4_700_000_000, "4.7 GB"), (637_000_000, "637 MB"),
    (92_000_000, "92 MB"), (1024, "1.0 KB"), (2048, "2.0 KB"), (1_000_000, "1 MB"), (512, "512 B"),
    (0, "0 B"), (1_500_000_000_000, "1.5 TB"), (19_999_999_999, "19 GB"),
])
def test_human_bytes(size, text):
    assert human_bytes(size) == text


@pytest.mark.parametrize(("count", "text"), [
    (8_000_000_000, "8B"), (3_212_749_888, "3.2B"), (137_000_000, "137M"), (22_566_000, "22.57M"),
    (133_700_000, "133.70M"), (12_345, "12K"), (999, "999"),
])
def test_human_number(count, text):
    assert human_number(count) == text


@pytest.mark.parametrize(("ago", "text"), [
    (timedelta(milliseconds=300), "Less than a second ago"),
    (timedelta(seconds=1), "1 second ago"),
    (timedelta(seconds=42), "42 seconds ago"),
    (timedelta(seconds=90), "About a minute ago"),
    (timedelta(minutes=4, seconds=59), "4 minutes ago"),
    (timedelta(minutes=75), "About an hour ago"),
    (timedelta(hours=2), "2 hours ago"),
    (timedelta(hours=24), "24 hours ago"),
    (timedelta(days=4), "4 days ago"),
    (timedelta(days=20), "2 weeks ago"),
    (timedelta(days=100), "3 months ago"),
    (timedelta(days=800), "2 years ago"),
])
def test_relative_time_in_the_past(ago, text):
    assert human_time(NOW - ago, NOW) == text


def test_relative_time_in_the_future_and_forever():
    assert human_time(NOW + timedelta(minutes=4, seconds=30), NOW) == "4 minutes from now"
    assert human_time(NOW + timedelta(days=365 * 292), NOW) == "Forever"
    assert human_time(None, NOW) == "Never"


def test_parse_time_reads_go_timestamps():
    parsed = parse_time("2025-05-10T08:06:48.639712648-07:00")
    assert parsed == datetime(2025, 5, 10, 15, 6, 48, 639712, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time(None) is None


@pytest.mark.parametrize(("ns", "text"), [
    (10_706_818_083, "10.706818083s"), (130_079_000, "130.079ms"), (1_334_875, "1.334875ms"),
    (4_232_710_000, "4.23271s"), (3600 * 10**9, "1h0m0s"), (61 * 10**9, "1m1s"), (999, "999ns"),
    (1500, "1.5µs"), (300 * 10**9, "5m0s"), (0, "0s"),
])
def test_go_duration(ns, text):
    assert go_duration(ns) == text


@pytest.mark.parametrize(("size", "vram", "text"), [
    (5_000, 0, "100% CPU"), (5_000, 5_000, "100% GPU"), (100, 52, "48%/52% CPU/GPU"),
    (100, 200, "Unknown"), (3, 1, "67%/33% CPU/GPU"),
])
def test_processor_column(size, vram, text):
    assert processor(size, vram) == text


def test_until_column():
    assert until(NOW + timedelta(minutes=4, seconds=10), NOW) == "4 minutes from now"
    assert until(NOW - timedelta(seconds=1), NOW) == "Stopping..."
    assert until(NOW + timedelta(days=365 * 292), NOW) == "Forever"
