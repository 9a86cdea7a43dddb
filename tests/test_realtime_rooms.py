"""Rooms: the interface a cluster backend implements (subscriptions, channels, counts)."""

from __future__ import annotations

import pytest

from sanic_gateway import errors
from sanic_gateway.realtime.rooms import Channel, Rooms


def test_channel_names_follow_kuzzle_and_keep_users_out_and_none_apart() -> None:
    assert Channel("r").name == "r-411"  # users none, propagated, scope all
    assert Channel("r", "in", "all").name == "r-112"
    assert Channel("r", "none", "in").name == "r-21"
    assert Channel("r", users="out").name != Channel("r", users="none").name
    with pytest.raises(errors.BadRequestError):
        Channel("r", scope="sideways")
    with pytest.raises(errors.BadRequestError):
        Channel("r", users=None)  # type: ignore[arg-type]


def test_subscriptions_counts_and_the_last_one_out_removes_the_room() -> None:
    rooms = Rooms()
    first = rooms.add("i", "c", Channel("r"), "conn-1", {"v": 1})
    assert (first.room_created, first.subscribed, first.count) == (True, True, 1)
    again = rooms.add("i", "c", Channel("r", users="all"), "conn-1", {})
    assert (again.room_created, again.subscribed, again.count) == (False, False, 1)
    assert rooms.add("i", "c", Channel("r"), "conn-2", {}).count == 2
    assert rooms.list() == {"i": {"c": {"r": 2}}}
    assert {c.name for c in rooms.channels("r")} == {"r-411", "r-111"}
    left = rooms.remove("conn-1", "r")
    assert left.volatile == {"v": 1} and set(left.channels) == {"r-411", "r-111"}
    assert (left.count, left.room_removed) == (1, False)
    with pytest.raises(errors.PreconditionError):
        rooms.remove("conn-1", "r")
    assert rooms.remove("conn-2", "r").room_removed
    assert not rooms.exists("r") and rooms.metrics() == {"rooms": 0, "subscriptions": 0}
    with pytest.raises(errors.NotFoundError):
        rooms.count("r")
