"""Bounded token caches (issue 7, item 7): revocations are forgotten here once the token would
have expired anyway, verified tokens are kept by time and number, and a revoked token is refused
until it expires all the same."""

from __future__ import annotations

import asyncio
import math
import time

from sanic_gateway.security.bounded import ExpiringSet, RecentMap
from tests.security_helpers import bearer, closed_yaml, denied, login, payload_of


async def _refresh_chain(client, jwt: str, count: int, expires_in: str) -> tuple[list[str], str]:
    """Refresh `count` times; the tokens revoked on the way, and the last one."""
    revoked = []
    for _ in range(count):
        r = await client.post(f"/_refreshToken?expiresIn={expires_in}", headers=bearer(jwt))
        assert r.status_code == 200, r.text
        revoked.append(jwt)
        jwt = r.json()["result"]["jwt"]
    return revoked, jwt


async def test_revocations_are_kept_until_the_token_would_have_expired(serve):
    served = await serve(closed_yaml())
    client, tokens = served.client, served.gateway.security.tokens
    first = await login(client, "alice", "alice-password", expiresIn="2s")
    revoked, _ = await _refresh_chain(client, first, 10, "2s")
    assert len(tokens._revoked) == 10
    for jwt in revoked:
        denied(await client.get("/_me", headers=bearer(jwt)), 401, "security.token.invalid")
    # every revoked token has expired by now
    await asyncio.sleep(max(payload_of(jwt)["exp"] for jwt in revoked) - time.time() + 0.1)
    for jwt in revoked[:2]:
        denied(await client.get("/_me", headers=bearer(jwt)), 401, "security.token.expired")
    # the next token checked against storage sweeps what expired (before: 10 entries forever)
    fresh = await login(client, "alice", "alice-password")
    assert (await client.get("/_me", headers=bearer(fresh))).status_code == 200
    assert len(tokens._revoked) == 0


async def test_a_revocation_dropped_from_the_bounded_cache_is_still_refused(serve):
    served = await serve(closed_yaml())
    client, tokens = served.client, served.gateway.security.tokens
    tokens._revoked.size = 3
    first = await login(client, "alice", "alice-password", expiresIn="1h")
    revoked, last = await _refresh_chain(client, first, 8, "1h")
    assert len(tokens._revoked) == 3
    for jwt in revoked:  # storage still knows them
        denied(await client.get("/_me", headers=bearer(jwt)), 401, "security.token.invalid")
    assert (await client.get("/_me", headers=bearer(last))).status_code == 200


async def test_verified_tokens_are_kept_one_second_only(serve):
    served = await serve(closed_yaml())
    client, tokens = served.client, served.gateway.security.tokens
    jwts = [await login(client, "alice", "alice-password") for _ in range(15)]
    for jwt in jwts:
        assert (await client.get("/_me", headers=bearer(jwt))).status_code == 200
    assert len(tokens._verified) == 15
    await asyncio.sleep(1.1)
    assert (await client.get("/_me", headers=bearer(jwts[0]))).status_code == 200
    assert len(tokens._verified) == 1  # before: every token ever verified, up to 100,000
    assert len(tokens._checked) == 1


# -- units ---------------------------------------------------------------------------------------

def test_recent_map_is_bounded_by_time_and_size():
    cache = RecentMap(ttl=1.0, size=3)
    for n in range(5):
        cache.put(f"k{n}", n, now=10.0 + n * 0.1)
    assert list(cache) == ["k2", "k3", "k4"]  # the oldest went
    cache.put("k3", 33, now=10.6)  # refreshed: the youngest now
    assert list(cache) == ["k2", "k4", "k3"]
    cache.put("k5", 5, now=11.45)  # k2 (10.2) and k4 (10.4) are over a second old
    assert list(cache) == ["k3", "k5"]
    assert cache["k3"] == (33, 10.6)


def test_expiring_set_forgets_keys_when_they_expire():
    revoked = ExpiringSet(size=100)
    revoked.add("a", 100.0, now=50.0)
    revoked.add("b", 200.0, now=50.0)
    revoked.add("never", None, now=50.0)
    assert "a" in revoked and revoked["never"] == math.inf
    revoked.prune(100.0)
    assert sorted(revoked) == ["b", "never"]
    revoked.add("c", 150.0, now=210.0)  # adding sweeps too; c itself is already expired
    assert sorted(revoked) == ["never"]
    revoked.clear()
    assert not revoked and not revoked._heap


def test_expiring_set_beyond_its_size_drops_the_soonest_to_expire():
    revoked = ExpiringSet(size=2)
    revoked.add("late", 300.0, now=0.0)
    revoked.add("soon", 100.0, now=0.0)
    revoked.add("mid", 200.0, now=0.0)
    assert sorted(revoked) == ["late", "mid"]
    revoked.add("late", 400.0, now=0.0)  # added again: its old expiry does not count
    revoked.add("x", 500.0, now=0.0)
    assert sorted(revoked) == ["late", "x"]
    for n in range(200):  # a key added again and again leaves no pile behind
        revoked.add("late", 1000.0 + n, now=0.0)
    assert len(revoked._heap) <= 2 * len(revoked) + 64
