"""Counters every member shares, atomic in Redis (one Lua script each, one round trip).

The profile rate limit (requests per user in a one-second window) and the brute-force defence
of logins (failures per username, lock delays doubling) count across the whole cluster.
The script runs on Redis' clock, so members on machines whose clocks differ agree. Redis down:
each member falls back on its own counters (`None` answers), never an error.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .bus import REDIS_ERRORS, Cluster

# one window per user: created by the first request, gone one second later (Kuzzle's limiter).
# ARGV[1]: how many requests to count at once (those that came while the last call was out)
RATE_SCRIPT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if count == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], 1000) end
return count
"""

# as security/logins.py's LoginGuard.attempt: 0 to go on, else the milliseconds to wait.
# ARGV: free failures, first delay (ms), longest delay (ms), forget after (ms)
LOGIN_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local locked = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if locked > now then return locked - now end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local over = failures - tonumber(ARGV[1])
if over > 0 then
  local delay = math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) * 2 ^ math.min(over - 1, 32))
  redis.call('HSET', KEYS[1], 'until', now + math.floor(delay))
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return 0
"""


class SharedCounters:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._rate = cluster.redis.register_script(RATE_SCRIPT)
        self._login = cluster.redis.register_script(LOGIN_SCRIPT)
        self._pending: dict[str, list[asyncio.Future[int | None]]] = {}
        self._draining: dict[str, asyncio.Task[None]] = {}

    @property
    def usable(self) -> bool:
        return self.cluster.healthy

    async def hit(self, user: str) -> int | None:
        """This request's rank in `user`'s current one-second window, cluster-wide (None:
        Redis unreachable, count locally). At most one call per user is out at a time: the
        requests arriving meanwhile are counted together by the next one (INCRBY n), so a busy
        user costs one round trip per batch, not per request."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int | None] = loop.create_future()
        self._pending.setdefault(user, []).append(waiter)
        if user not in self._draining:
            self._draining[user] = loop.create_task(self._drain(user))
        return await waiter

    async def _drain(self, user: str) -> None:
        key = self.cluster.key("rate", user)
        try:
            while waiters := self._pending.pop(user, None):
                try:
                    total = int(await self._rate(keys=[key], args=[len(waiters)]))
                except REDIS_ERRORS as exc:
                    # the requests that came while this call was out count locally too: one
                    # wait of command_timeout per outage, not one per batch
                    self.cluster.failed(exc)
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
                    return
                first = total - len(waiters)
                for rank, waiter in enumerate(waiters, first + 1):
                    if not waiter.done():
                        waiter.set_result(rank)
        finally:
            del self._draining[user]
            for waiter in self._pending.pop(user, ()):  # cancelled, failed meanwhile
                if not waiter.done():
                    waiter.set_result(None)

    async def login_attempt(self, key: bytes, free: int, delay: float, max_delay: float,
                            forget_after: float) -> float | None:
        """Record an attempt on a username (its digest); 0 to go on, else the seconds to
        wait (None: Redis unreachable, count locally)."""
        args: list[Any] = [free, int(delay * 1000), int(max(delay, max_delay) * 1000),
                           int(forget_after * 1000)]
        try:
            waited = await self._login(keys=[self._login_key(key)], args=args)
        except REDIS_ERRORS as exc:
            self.cluster.failed(exc)
            return None
        return int(waited) / 1000

    async def login_succeeded(self, key: bytes) -> None:
        """Forget the username's failures (nothing while Redis is unreachable: the entry
        expires by itself, and a login would otherwise wait for Redis' silence)."""
        if not self.usable:
            return
        try:
            await self.cluster.redis.delete(self._login_key(key))
        except REDIS_ERRORS as exc:
            self.cluster.failed(exc)

    def _login_key(self, key: bytes) -> str:
        return self.cluster.key("login", key.hex())
