"""A plugin for the fixture's tests: `init` fails on demand, `shutdown` is recorded."""

from __future__ import annotations

from typing import Any


class Lifecycle:
    def init(self, config: dict[str, Any], context: Any) -> None:
        if config.get("fail_init"):
            raise RuntimeError("asked to fail")
        self.shut_down = False

    async def shutdown(self) -> None:
        self.shut_down = True
