"""A least-recently-used cache bounded by the approximate bytes of what it holds, not by a count of entries.

An entry-count bound (``functools.lru_cache(maxsize=16)``) keeps sixteen of whatever comes: sixteen
parsed files of a hostile size are as welcome as sixteen small ones. Here each value is weighed when
it is stored, the least recently used are dropped until the total fits, and a value heavier than the
whole budget is not kept at all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteLRU(Generic[K, V]):
    """A thread-safe LRU cache holding at most ``max_bytes`` as weighed by ``size_of``."""

    def __init__(self, max_bytes: int, size_of: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """The weight of what is cached now."""
        return self._bytes

    def get(self, key: K) -> V | None:
        """The cached value (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V) -> None:
        """Cache ``value``, dropping the least recently used until it fits; one heavier than the budget is not kept."""
        size = max(0, self._size_of(value))
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return
            while self._entries and self._bytes + size > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
            self._entries[key] = (value, size)
            self._bytes += size

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The cached value, or ``load()``'s (cached for next time); what ``load`` raises is not cached."""
        value = self.get(key)
        if value is None:
            value = load()
            self.put(key, value)
        return value

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
