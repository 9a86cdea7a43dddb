"""Realtime filters in Koncorde's language: validation, normal form, room ids, indexed matching.

    engine = Engine()
    room_id = engine.register("index", "collection", {"equals": {"city": "NYC"}})
    engine.test("index", "collection", {"city": "NYC"})  # -> [room_id]
"""

from .engine import Engine, Normalized
from .standardize import REGEXP_ENGINE

__all__ = ["REGEXP_ENGINE", "Engine", "Normalized"]
