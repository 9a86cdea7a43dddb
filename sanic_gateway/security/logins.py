"""Brute-force defence of logins, per target username, whatever the connection or address.

An attempt counts as a failure from its start until it succeeds (so a burst of concurrent
guesses is counted before any password is checked). Beyond `free` failures, each new attempt
locks the username for a delay doubling from `delay` up to `max_delay`; while locked, attempts
are refused (429 with Retry-After) before any credential is looked at, and are not counted.
Nothing waits: a refusal is immediate, so an attacker holds no task and blocks nothing. A
success forgets the username; so does `FORGET_AFTER` seconds without an attempt. At most
`MAX_ENTRIES` usernames are tracked (oldest dropped first): the memory is bounded whatever the
number of usernames tried. Counters are per process; in cluster mode the same rules run in Redis
for the whole cluster (cluster/counters.py) and these serve while Redis is unreachable.
"""

from __future__ import annotations

import math
import time

FORGET_AFTER = 900.0
MAX_ENTRIES = 100_000


class LoginGuard:
    def __init__(self, free: int, delay: float, max_delay: float) -> None:
        self.free = free  # 0: disabled
        self.delay = delay
        self.max_delay = max(delay, max_delay)
        # username key -> [failures, locked until, last attempt] (monotonic seconds)
        self._entries: dict[bytes | str, list[float]] = {}

    def attempt(self, key: bytes | str) -> float:
        """Record an attempt on `key`; 0 if it may proceed, else the seconds to wait."""
        if not self.free:
            return 0.0
        now = time.monotonic()
        entry = self._entries.pop(key, None)  # re-inserted last: the dict stays in age order
        if entry is not None and now - entry[2] > FORGET_AFTER:
            entry = None
        if entry is None:
            entry = [0.0, 0.0, now]
        self._entries[key] = entry
        if entry[1] > now:
            return entry[1] - now
        entry[0] += 1
        entry[2] = now
        over = entry[0] - self.free
        if over > 0:
            entry[1] = now + min(self.max_delay, self.delay * 2 ** min(over - 1, 32))
        if len(self._entries) > MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]
        return 0.0

    def succeeded(self, key: bytes | str) -> None:
        self._entries.pop(key, None)

    @staticmethod
    def retry_after(wait: float) -> str:
        """The Retry-After header's value: whole seconds, at least 1."""
        return str(max(1, math.ceil(wait)))
