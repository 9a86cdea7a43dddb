"""The core `server` controller, written as a default plugin (the way any plugin could)."""

from __future__ import annotations

import os
import time
from typing import Any

from plugin_specs import hookimpl

from .. import errors
from ..request import Request
from . import serverinfo
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
            "getConfig": (self.get_config, [("get", "/_getConfig")]),
            "capabilities": (self.capabilities, [("get", "/_capabilities")]),
            "metrics": (self.metrics, [("get", "/_metrics"), ("get", "/metrics")]),
        })]

    async def admin_exists(self, request: Request) -> dict[str, bool]:
        return {"exists": await self.security.store.admin_exists()}

    async def now(self, request: Request) -> dict[str, Any]:
        return {"now": int(time.time() * 1000)}

    async def health_check(self, request: Request) -> dict[str, Any]:
        """Each service's status (`services`: a comma-separated subset); 503 if storage is
        red; in cluster mode, the live members, and yellow (200) while Redis is unreachable."""
        wanted = request.input.args.get("services")
        if isinstance(wanted, str):
            wanted = wanted.split(",")
        names = ({str(n).strip() for n in wanted} if isinstance(wanted, list) else None)
        services = {}
        if names is None or "storageEngine" in names:
            services["storageEngine"] = await serverinfo.storage_status(self.gateway.storage)
        cluster = None
        if self.gateway.config.data["cluster"]["redis"] and (names is None or "cluster" in names):
            cluster = serverinfo.cluster_state(self.gateway)
            services["cluster"] = cluster["status"]
        status = "red" if services.get("storageEngine") == "red" else (
            "yellow" if "red" in services.values() else "green")
        if status == "red":
            request.response.status = 503
        out: dict[str, Any] = {"status": status, "services": services}
        if cluster is not None:  # Redis down: yellow, 200: this member serves on alone
            out["nodes"] = cluster["nodes"]
        return out

    async def get_config(self, request: Request) -> dict[str, Any]:
        return serverinfo.public_config(self.gateway.config.data, self.gateway.version)

    async def capabilities(self, request: Request) -> dict[str, Any]:
        gateway = self.gateway
        return {
            "limits": serverinfo.limits(gateway.config.data["limits"]),
            "plugins": {name: {"version": plugin.version}
                        for name, plugin in gateway.plugins.items()},
            "routes": gateway.api.public_api().thawed(),
            "services": {"storage": serverinfo.storage_info(gateway.storage)},
            "version": gateway.version,
        }

    async def metrics(self, request: Request) -> dict[str, Any] | str:
        """Kuzzle's JSON snapshot; or, with `format=prometheus` (what `GET /metrics` is), the
        Prometheus text exposition of the counters (metrics.py): one action, one right."""
        wanted = request.input.args.get("format")
        if wanted is None and request.context.connection.misc.get("path") == "/metrics":
            wanted = "prometheus"
        if wanted not in (None, "json", "prometheus"):
            raise errors.get("api.assert.invalid_argument", "format", '"json" or "prometheus"')
        if wanted == "prometheus":
            exporter = self.gateway.exporter
            if exporter is None:
                raise errors.get("api.process.not_found",
                                 "Prometheus metrics are disabled (server.metrics: false)")
            body, content_type = exporter.render()
            request.response.raw = True
            request.response.set_header("Content-Type", content_type)
            return body.decode()
        http = getattr(self.gateway, "http", None)
        connections = {"http/1.1": len(http.open_connections) if http else 0}
        connections.update((p, n) for p, n in self.gateway.hub.counts.items() if n)
        return {
            "api": {"concurrentRequests": http.active if http else 0, "pendingRequests": 0},
            "network": {"connections": connections},
            "realtime": self.gateway.realtime.metrics(),
        }

    async def public_api(self, request: Request) -> dict[str, Any]:
        return self.gateway.api.public_api()  # shared: the funnel copies it for pipes

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
                "api": {"routes": gateway.api.public_api().thawed()},
                "application": {},
                "plugins": plugins,
                "uptime": f"{time.time() - _STARTED:.3f}s",
                "pid": os.getpid(),
                **serverinfo.runtime(),
            },
            "services": await serverinfo.services(gateway),
        }}

    async def openapi(self, request: Request) -> dict[str, Any]:
        request.response.raw = True
        gateway = self.gateway
        return build_openapi(
            gateway.api, gateway.version, strategies=self.security.strategies.names(),
            ui=gateway.config.data["server"]["protocols"]["http"]["enabled"])
