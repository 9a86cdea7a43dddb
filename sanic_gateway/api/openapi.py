"""An OpenAPI 3 description of every HTTP route, core and plugin ones."""

from __future__ import annotations

import re
from typing import Any

from .base import ApiTable

_PARAM = re.compile(r":([A-Za-z0-9_]+)")

_ENVELOPE = {
    "type": "object",
    "properties": {
        "requestId": {"type": "string"},
        "status": {"type": "integer"},
        "error": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Error"}]},
        "controller": {"type": "string"},
        "action": {"type": "string"},
        "index": {"type": "string", "nullable": True},
        "collection": {"type": "string", "nullable": True},
        "volatile": {"type": "object", "nullable": True},
        "result": {},
    },
    "required": ["requestId", "status", "error", "controller", "action", "result"],
}
_ERROR = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "example": "plugin.runtime.pipe_timeout"},
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "status": {"type": "integer"},
        "props": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["id", "code", "message", "status"],
}


def build_openapi(api: ApiTable, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for action in api.actions():
        for route in action.http:
            path = _PARAM.sub(r"{\1}", route.path)
            operation: dict[str, Any] = {
                "operationId": f"{action.controller}:{action.name}:{route.verb}:{path}",
                "summary": f"{action.controller}:{action.name}",
                "tags": [action.controller],
                "responses": {
                    "200": {"description": "Kuzzle's response envelope",
                            "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/Response"}}}},
                    "default": {"description": "an error, in the same envelope",
                                "content": {"application/json": {
                                    "schema": {"$ref": "#/components/schemas/Response"}}}},
                },
            }
            params = _PARAM.findall(route.path)
            if params:
                operation["parameters"] = [
                    {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                    for p in params
                ]
            if route.verb in ("post", "put", "patch"):
                operation["requestBody"] = {
                    "required": False,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            paths.setdefault(path, {})[route.verb] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "sanic-gateway", "version": version},
        "paths": paths,
        "components": {"schemas": {"Response": _ENVELOPE, "Error": _ERROR}},
    }
