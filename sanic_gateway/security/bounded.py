"""The two bounded structures token checks cache in: they never grow with the number of tokens
ever seen, only with those seen lately (RecentMap) or still alive (ExpiringSet).

Both are dict subclasses, so that a look-up on the request path is a plain dict look-up; the
trimming is done when entries are added, at a cost amortized to O(1) (O(log n)) per entry.
"""

from __future__ import annotations

import collections
import heapq
import math
from typing import Any


class RecentMap(collections.OrderedDict[str, tuple[Any, float]]):
    """key -> (value, when it was put), oldest first. Putting an entry drops those older than
    `ttl` seconds and, beyond `size` entries, the oldest: a reader still checks the age of what
    it gets (an entry may outlive its `ttl` until the next put)."""

    def __init__(self, ttl: float, size: int) -> None:
        super().__init__()
        self.ttl = ttl
        self.size = size

    def put(self, key: str, value: Any, now: float) -> None:
        self.pop(key, None)  # a refreshed entry moves to the young end
        self[key] = (value, now)
        self.trim(now)

    def trim(self, now: float) -> None:
        """Drop the entries older than `ttl`, then the oldest beyond `size`."""
        oldest = now - self.ttl
        while self:
            first = next(iter(self))
            if len(self) <= self.size and self[first][1] > oldest:
                return
            del self[first]


class ExpiringSet(dict[str, float]):
    """Keys with their expiry time (`time.time()` seconds, `math.inf`: never). `add` and
    `prune` drop the expired ones; beyond `size` entries, the ones expiring first go, so it is
    only fit for a cache of something kept elsewhere too. `key in s` is a dict look-up and may
    still say True for an expired key not pruned yet."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self._heap: list[tuple[float, str]] = []  # (expiry, key), soonest first

    def add(self, key: str, expires_at: float | None, now: float) -> None:
        expiry = math.inf if expires_at is None else expires_at
        self[key] = expiry
        heapq.heappush(self._heap, (expiry, key))
        self.prune(now)
        while len(self) > self.size:
            self._pop_first()
        if len(self._heap) > 2 * len(self) + 64:  # stale heap entries (keys added again)
            self._heap = [(exp, k) for k, exp in self.items()]
            heapq.heapify(self._heap)

    def prune(self, now: float) -> None:
        """Drop every key expired at `now`."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            self._pop_first()

    def _pop_first(self) -> None:
        expiry, key = heapq.heappop(self._heap)
        if self.get(key) == expiry:  # not added again with another expiry since
            del self[key]

    def clear(self) -> None:
        super().clear()
        self._heap.clear()
