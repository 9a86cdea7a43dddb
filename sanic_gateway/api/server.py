"""The core `server` controller, written as a default plugin (the way any plugin could)."""

from __future__ import annotations

import os
import time
from typing import Any

from plugin_specs import hookimpl

from ..request import Request
from .base import Controller, CoreController, controller
from .openapi import build_openapi

_STARTED = time.time()


class ServerController(CoreController):
    @hookimpl
    def api_controllers(self) -> list[Controller]:
        return [controller("server", {
            "now": (self.now, [("get", "/_now")]),
            "info": (self.info, [("get", "/"), ("get", "/_serverInfo")]),
            "healthCheck": (self.health_check, [("get", "/_healthCheck")]),
            "publicApi": (self.public_api, [("get", "/_publicApi")]),
            "openapi": (self.openapi, [("get", "/_openapi")]),
            "adminExists": (self.admin_exists, [("get", "/_adminExists")]),
        })]

    async def admin_exists(self, request: Request) -> dict[str, bool]:
        return {"exists": await self.security.store.admin_exists()}

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
