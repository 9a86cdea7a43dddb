"""A plugin for tests: it records what it sees and misbehaves on demand."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any


class Recorder:
    def init(self, config: dict[str, Any], context: Any) -> None:
        self.config = config
        self.context = context
        self.seen: list[str] = []
        self.hook_errors: list[dict[str, Any]] = []
        self.finally_ran = asyncio.Event()
        self.slow_hook_done = False
        self.cancelled = False

    # -- pipes -------------------------------------------------------------------------------
    async def trace(self, payload: Any, event: str) -> Any:
        self.seen.append(event)
        return payload

    async def add_a(self, request: Any) -> Any:
        request.input.body.setdefault("trail", []).append("a")
        return request

    async def add_b(self, request: Any) -> Any:
        request.input.body.setdefault("trail", []).append("b")
        return request

    def add_sync(self, request: Any) -> Any:
        """A plain function: it runs in a worker thread, never on the event loop's thread."""
        request.input.body.setdefault("trail", []).append(
            "sync-thread" if threading.current_thread() is not threading.main_thread()
            else "sync-main")
        return request

    async def returns_none(self, request: Any) -> None:
        request.input.body["touched"] = True

    async def deny(self, request: Any) -> Any:
        raise self.context.errors.ForbiddenError("denied by a pipe", id="plugin.test.denied")

    async def explode(self, request: Any) -> Any:
        raise ValueError("boom")

    async def slow(self, request: Any) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.finally_ran.set()
        return request

    def blocking(self, request: Any) -> Any:
        time.sleep(0.3)
        return request

    async def recover(self, request: Any) -> Any:
        return {"recovered": True, "was": request.error.id}

    async def returns_dict(self, request: Any) -> Any:
        return {"not": "a request"}

    # -- hooks -------------------------------------------------------------------------------
    def hook_trace(self, payload: Any, event: str) -> None:
        self.seen.append(f"hook {event}")

    async def slow_hook(self, payload: Any, event: str) -> None:
        await asyncio.sleep(1.5)
        self.slow_hook_done = True

    async def failing_hook(self, payload: Any, event: str) -> None:
        raise RuntimeError("hook failed")

    async def on_hook_error(self, payload: dict[str, Any], event: str) -> None:
        self.hook_errors.append(payload)
        raise RuntimeError("an error hook failing too must not loop")

    # -- actions -----------------------------------------------------------------------------
    async def echo(self, request: Any) -> dict[str, Any]:
        resource = request.input.resource
        return {
            "args": request.input.args,
            "body": request.input.body,
            "resource": {"index": resource.index, "collection": resource.collection,
                         "_id": resource._id},
            "jwt": request.input.jwt,
            "volatile": request.input.volatile,
            "protocol": request.context.protocol,
        }

    def echo_sync(self, request: Any) -> dict[str, Any]:
        return {"thread": threading.current_thread() is not threading.main_thread()}

    async def fail(self, request: Any) -> Any:
        raise ValueError("action failed")

    async def seen_events(self, request: Any) -> list[str]:
        return self.seen

    async def with_header(self, request: Any) -> dict[str, Any]:
        request.response.set_header("X-Custom", "yes")
        return {"ok": True}

    async def unserializable(self, request: Any) -> Any:
        return object()

    async def run_inner(self, request: Any) -> Any:
        """Runs another API request from inside, through the whole funnel."""
        inner = await self.context.accessors.execute(
            {"controller": "rec/api", "action": "echo", "body": {"from": "inside"}})
        fired = await self.context.accessors.trigger("custom", {"n": 1})
        return {"inner": inner.result, "fired": fired}
