"""ByteLRU: a cache bounded by the weight of what it holds, not by how many entries."""

from __future__ import annotations

import pytest

from corral_common.lru import ByteLRU


def _cache(max_bytes: int = 100) -> ByteLRU[str, bytes]:
    return ByteLRU(max_bytes, len)


def test_least_recently_used_go_first_until_the_new_value_fits() -> None:
    cache = _cache()
    cache.put("a", b"x" * 40)
    cache.put("b", b"x" * 40)
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", b"x" * 40)
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.bytes == 80 and len(cache) == 2


def test_many_small_values_fit_where_few_large_ones_do() -> None:
    cache = _cache()
    for i in range(100):
        cache.put(str(i), b"x")
    assert len(cache) == 100
    cache.put("big", b"x" * 60)
    assert len(cache) == 41 and cache.bytes == 100


def test_a_value_heavier_than_the_budget_is_not_kept() -> None:
    cache = _cache()
    cache.put("a", b"x" * 10)
    cache.put("huge", b"x" * 101)
    assert cache.get("huge") is None and cache.get("a") == b"x" * 10


def test_replacing_a_key_reweighs_it() -> None:
    cache = _cache()
    cache.put("a", b"x" * 90)
    cache.put("a", b"x" * 5)
    assert cache.bytes == 5 and len(cache) == 1


def test_get_or_load_loads_once_and_does_not_cache_failures() -> None:
    cache, calls = _cache(), []

    def load() -> bytes:
        calls.append(1)
        return b"v"

    assert cache.get_or_load("k", load) == b"v" and cache.get_or_load("k", load) == b"v"
    assert len(calls) == 1

    def fail() -> bytes:
        raise ValueError("bad file")

    with pytest.raises(ValueError):
        cache.get_or_load("bad", fail)
    assert cache.get("bad") is None
