"""Which ranges contain a number: a centred interval tree, rebuilt lazily.

A query costs O(log n) bisections plus list slices of the answers, which keeps Python's per-item
work out of the loop. Intervals added since the last build wait in a list scanned linearly; the
next query rebuilds the tree once that list is longer than about sqrt(n), and a removal does once
removed conditions outnumber half the live ones.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any, Protocol


class Interval(Protocol):
    key: str
    low: float
    high: float


class RangeIndex:
    __slots__ = ("dead", "live", "pending", "root")

    def __init__(self) -> None:
        self.live: dict[str, Interval] = {}
        self.pending: list[Interval] = []
        self.dead = 0
        self.root: Any = None

    def __len__(self) -> int:
        return len(self.live)

    def add(self, cond: Interval) -> None:
        self.live[cond.key] = cond
        self.pending.append(cond)

    def remove(self, cond: Interval) -> None:
        del self.live[cond.key]
        if cond in self.pending:
            self.pending.remove(cond)
        else:
            self.dead += 1
            if self.dead > 16 + len(self.live) // 2:
                self._build()

    def _build(self) -> None:
        self.root = _build(list(self.live.values()))
        self.pending = []
        self.dead = 0

    def query(self, x: float, out: list[Any]) -> None:
        """Append to `out` every interval holding x (removed ones may come too)."""
        if len(self.pending) > 8 + int(len(self.live) ** 0.5):
            self._build()
        node = self.root
        while node is not None:
            center, lows, by_low, neg_highs, by_high, left, right = node
            if x < center:
                k = bisect_right(lows, x)
                if k:
                    out.extend(by_low[:k])
                node = left
            elif x > center:
                k = bisect_right(neg_highs, -x)
                if k:
                    out.extend(by_high[:k])
                node = right
            else:
                out.extend(by_low)
                break
        for cond in self.pending:
            if cond.low <= x <= cond.high:
                out.append(cond)


def _build(conds: list[Interval]) -> Any:
    if not conds:
        return None
    points = sorted(
        p for cond in conds for p in (cond.low, cond.high) if -1e308 < p < 1e308)
    center = points[len(points) // 2] if points else 0.0
    here, left, right = [], [], []
    for cond in conds:
        if cond.high < center:
            left.append(cond)
        elif cond.low > center:
            right.append(cond)
        else:
            here.append(cond)
    by_low = sorted(here, key=lambda c: c.low)
    by_high = sorted(here, key=lambda c: -c.high)
    return (
        center,
        [c.low for c in by_low], by_low,
        [-c.high for c in by_high], by_high,
        _build(left), _build(right),
    )
