"""The core `server` controller, written as a default plugin (the way any plugin could)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from plugin_specs import hookimpl

from ..request import Request
from .base import Action, Controller, HttpRoute
from .openapi import build_openapi

if TYPE_CHECKING:
    from ..gateway import Gateway

_STARTED = time.time()


class ServerController:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @hookimpl
    def api_controllers(self) -> list[Controller]:
        def action(name: str, call: Any, *paths: str) -> tuple[str, Action]:
            return name, Action("server", name, call, tuple(HttpRoute("get", p) for p in paths))

        return [Controller("server", dict((
            action("now", self.now, "/_now"),
            action("info", self.info, "/", "/_serverInfo"),
            action("healthCheck", self.health_check, "/_healthCheck"),
            action("publicApi", self.public_api, "/_publicApi"),
            action("openapi", self.openapi, "/_openapi"),
            action("adminExists", self.admin_exists, "/_adminExists"),
        )))]

    async def admin_exists(self, request: Request) -> dict[str, bool]:
        return {"exists": await self.gateway.security.store.admin_exists()}

    async def now(self, request: Request) -> dict[str, Any]:
        return {"now": int(time.time() * 1000)}

    async def health_check(self, request: Request) -> dict[str, Any]:
        return {"status": "green", "services": {}}

    async def public_api(self, request: Request) -> dict[str, Any]:
        return self.gateway.api.public_api()

    async def info(self, request: Request) -> dict[str, Any]:
        gateway = self.gateway
        plugins = {
            name: {
                "manifest": {"name": name, "version": plugin.version},
                "hooks": sorted(plugin.spec.get("hooks", {})),
                "pipes": sorted(plugin.spec.get("pipes", {})),
                "controllers": [f"{name}/{c}" for c in plugin.spec.get("controllers", {})],
                "routes": [{"verb": r["verb"], "url": r["url"], "controller": r["controller"],
                            "action": r["action"]} for r in plugin.spec.get("routes", [])],
                "strategies": sorted(plugin.spec.get("strategies", {})),
            }
            for name, plugin in gateway.plugins.items()
        }
        return {"serverInfo": {
            "kuzzle": {
                "version": gateway.version,
                "api": {"routes": gateway.api.public_api()},
                "plugins": plugins,
                "uptime": f"{time.time() - _STARTED:.0f}s",
                "pid": os.getpid(),
            },
            "services": {},
        }}

    async def openapi(self, request: Request) -> dict[str, Any]:
        request.response.raw = True
        return build_openapi(self.gateway.api, self.gateway.version)
