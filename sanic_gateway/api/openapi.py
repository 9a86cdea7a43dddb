"""An OpenAPI 3.1 description of every HTTP route the gateway serves: core and plugin actions,
`POST /_query`, the probes and the API page. Built from the running API table, so plugin routes
appear as declared; request bodies of core actions come from `openapi_schemas`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .base import Action, ApiTable
from .openapi_schemas import BODIES, PATH, QUERY, body_required

_PARAM = re.compile(r":([A-Za-z0-9_]+)")
_JSON = "application/json"

# statuses any action may answer with besides 200, in the error envelope: bad input, no or bad
# token, rights, unknown resource, failed precondition, body too large, rate limit; 504 when a
# pipe or the request outlives its timeout
_ERROR_STATUSES = {
    "400": "bad input (`api.assert.*`, a malformed body or header)",
    "401": "no valid token where one is needed",
    "403": "the user's rights do not allow this action",
    "404": "an unknown resource, or a URL or verb that is not served",
    "412": "a precondition failed (e.g. an existing id)",
    "413": "the body is larger than `server.max_request_size`",
    "429": "a rate limit was reached (logins per second, a profile's `rateLimit`)",
    "503": "the gateway is starting, stopping, or a service it needs is down",
    "504": "a pipe or the request outlived its timeout",
}
# actions that answer a PartialError (206) beside their result when some ids failed
_PARTIAL = frozenset({"security:mDeleteUsers", "security:mDeleteProfiles",
                      "security:mDeleteRoles"})

_NULLABLE_STRING = {"type": ["string", "null"]}
SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Kuzzle's error object: `id` is `domain.subdomain.name`, `code` the "
                       "number Kuzzle computes from it, `props` the message's arguments. "
                       "`stack` only under `run --dev`.",
        "properties": {
            "id": {"type": "string", "examples": ["security.rights.forbidden"]},
            "code": {"type": "integer"},
            "message": {"type": "string"},
            "status": {"type": "integer"},
            "props": {"type": "array"},
            "stack": {"type": "string"},
        },
        "required": ["id", "code", "message", "status"],
    },
    "Response": {
        "type": "object",
        "description": "Kuzzle's response envelope: every answer, errors included.",
        "properties": {
            "requestId": {"type": "string"},
            "status": {"type": "integer"},
            "error": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Error"}]},
            "controller": _NULLABLE_STRING,
            "action": _NULLABLE_STRING,
            "index": _NULLABLE_STRING,
            "collection": _NULLABLE_STRING,
            "volatile": {"type": ["object", "null"]},
            "result": {"description": "the action's result (any JSON value); null on error"},
        },
        "required": ["requestId", "status", "error", "controller", "action", "index",
                     "collection", "volatile", "result"],
    },
    "Success": {
        "description": "the envelope of a successful answer",
        "allOf": [{"$ref": "#/components/schemas/Response"},
                  {"properties": {"error": {"type": "null"}}}],
    },
    "Failure": {
        "description": "the envelope of an error: `error` set, `result` null",
        "allOf": [{"$ref": "#/components/schemas/Response"},
                  {"properties": {"error": {"$ref": "#/components/schemas/Error"},
                                  "result": {"type": "null"}}}],
    },
    "Partial": {
        "description": "Kuzzle's PartialError (206): the result, and an error listing the "
                       "items that failed",
        "allOf": [{"$ref": "#/components/schemas/Response"},
                  {"properties": {"error": {"$ref": "#/components/schemas/Error"}}}],
    },
    "ApiRequest": {
        "type": "object",
        "description": "A whole API request, as other protocols send it. Every field other "
                       "than those listed goes to the action's arguments.",
        "properties": {
            "controller": {"type": "string"},
            "action": {"type": "string"},
            "index": {"type": "string"},
            "collection": {"type": "string"},
            "_id": {"type": "string"},
            "body": {"type": ["object", "null"]},
            "jwt": {"type": "string"},
            "volatile": {"type": ["object", "null"]},
            "requestId": {"type": "string"},
        },
        "required": ["controller", "action"],
    },
}

_RESPONSES: dict[str, Any] = {
    "Success": {"description": "the action's result in the envelope",
                "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Success"}}}},
    "Partial": {"description": "some items failed: PartialError beside the result",
                "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Partial"}}}},
    **{f"E{status}": {"description": text, "content": {_JSON: {"schema": {
        "$ref": "#/components/schemas/Failure"}}}} for status, text in _ERROR_STATUSES.items()},
}

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "`Authorization: Bearer <token>`: a token from `auth:login`, "
                              "or an API key"},
    "cookie": {"type": "apiKey", "in": "cookie", "name": "authToken",
               "description": "Kuzzle's browser mode: `auth:login?cookieAuth=true` sets an "
                              "HttpOnly `authToken` cookie, sent by the browser from then on"},
}
# every operation: a bearer token, the cookie, or none (the anonymous user's rights apply)
_SECURITY = [{"bearer": []}, {"cookie": []}, {}]

_HEADERS = [
    {"name": "X-Kuzzle-Volatile", "in": "header", "required": False,
     "description": "volatile data (a JSON object), echoed in the envelope and given to "
                    "realtime notifications",
     "content": {_JSON: {"schema": {"type": "object"}}}},
]


def build_openapi(api: ApiTable, version: str, *, strategies: Iterable[str] = (),
                  ui: bool = False) -> dict[str, Any]:
    """The document `GET /_openapi` answers. `strategies` are the authentication strategies
    the gateway knows (for the `strategy` path parameters); `ui`: the API page is served."""
    strategy_names = sorted(strategies)
    paths: dict[str, dict[str, Any]] = {}
    for action in api.actions():
        for route in action.http:
            path = _PARAM.sub(r"{\1}", route.path)
            paths.setdefault(path, {})[route.verb] = _operation(action, route.verb,
                                                                route.path, strategy_names)
    paths["/_query"] = {"post": _query_operation()}
    paths.update(_probes())
    if ui:
        paths.update(_ui_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sanic-gateway",
            "version": version,
            "description": "Every HTTP route of this gateway: its core controllers (Kuzzle's "
                           "API v2) and its plugins' routes. Every answer is Kuzzle's response "
                           "envelope; a `GET` route also answers `HEAD`.",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS, "responses": _RESPONSES,
                       "securitySchemes": SECURITY_SCHEMES},
        "security": _SECURITY,
        "tags": _tags(api),
    }


def _tags(api: ApiTable) -> list[dict[str, str]]:
    tags = []
    for name, ctrl in api.controllers.items():
        if not any(action.http for action in ctrl.actions.values()):
            continue
        plugin = next((a.plugin for a in ctrl.actions.values() if a.plugin), None)
        tags.append({"name": name, "description": (f"plugin `{plugin}`" if plugin
                                                    else "core controller")})
    return [*tags, {"name": "query", "description": "any action, named in the body"},
            {"name": "probes", "description": "for orchestrators, outside the API"}]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _operation(action: Action, verb: str, kuzzle_path: str,
               strategies: list[str]) -> dict[str, Any]:
    name = f"{action.controller}:{action.name}"
    path = _PARAM.sub(r"{\1}", kuzzle_path)
    responses: dict[str, Any] = {"200": _ref("Success")}
    if name == "server:openapi":  # sent raw, without the envelope
        responses["200"] = {"description": "this document", "content": {_JSON: {"schema": {
            "type": "object", "required": ["openapi", "info", "paths"]}}}}
    elif name == "server:metrics":  # Kuzzle's JSON snapshot, or Prometheus' text format
        responses["200"] = {"description": "the metrics: Kuzzle's snapshot in the envelope, "
                                           "or Prometheus' text format, sent raw",
                            "content": {_JSON: {"schema": {"$ref": "#/components/schemas/"
                                                                      "Success"}},
                                        "text/plain": {"schema": {"type": "string"}}}}
    if name in _PARTIAL:
        responses["206"] = _ref("Partial")
    responses.update({status: _ref(f"E{status}") for status in _ERROR_STATUSES})
    operation: dict[str, Any] = {
        "operationId": f"{name}:{verb}:{path}",
        "summary": name,
        "description": (f"Action `{action.name}` of plugin controller `{action.controller}`."
                        if action.plugin else f"Kuzzle's `{name}`."),
        "tags": [action.controller],
        "responses": responses,
    }
    params: list[dict[str, Any]] = []
    in_path = _PARAM.findall(kuzzle_path)
    for param in in_path:
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if param == "strategy" and strategies:
            schema = {"type": "string", "enum": strategies}
        schema = PATH.get(name, {}).get(param, schema)
        params.append({"name": param, "in": "path", "required": True, "schema": schema})
    for arg, schema in QUERY.get(name, {}).items():
        if arg not in in_path:
            params.append({"name": arg, "in": "query", "required": False, "schema": schema})
    params.extend(_HEADERS)
    operation["parameters"] = params
    if verb in ("post", "put", "patch"):
        body = BODIES.get(name, {"type": "object"})
        operation["requestBody"] = {
            "required": body_required(body),
            "description": "a JSON object (`input.body`)",
            "content": {_JSON: {"schema": body}},
        }
    return operation


def _query_operation() -> dict[str, Any]:
    return {
        "operationId": "query",
        "summary": "any action",
        "description": "The body is a whole API request; the answer is that action's.",
        "tags": ["query"],
        "requestBody": {"required": True, "content": {_JSON: {
            "schema": {"$ref": "#/components/schemas/ApiRequest"}}}},
        "parameters": list(_HEADERS),
        "responses": {"200": _ref("Success"), "206": _ref("Partial"),
                      **{status: _ref(f"E{status}") for status in _ERROR_STATUSES}},
    }


def _probes() -> dict[str, Any]:
    envelope = {"content": {_JSON: {"schema": {"$ref": "#/components/schemas/Response"}}}}
    paths = {}
    for path, summary, text in (
            ("/_healthcheck", "liveness probe",
             "200 while the process serves (not server:healthCheck, GET /_healthCheck, which "
             "reports the services: the case differs, as in Kuzzle)"),
            ("/_ready", "readiness probe",
             "200 once the gateway has started, 503 before and once it stops")):
        paths[path] = {"get": {
            "operationId": f"probe:{path}",
            "summary": summary,
            "description": f"{text}. Answered outside the API: no events, no rights.",
            "tags": ["probes"],
            "security": [],
            "responses": {"200": {"description": "serving", **envelope},
                          "503": {"description": "not serving", **envelope}},
        }}
    return paths


def _ui_paths() -> dict[str, Any]:
    from ..protocols.openapi_ui import ASSETS, PAGE_PATH

    return {
        PAGE_PATH: {"get": {
            "operationId": "openapi:ui",
            "summary": "the API page",
            "description": "This document rendered by Swagger UI, from files shipped in "
                           "the package.",
            "tags": ["server"],
            "security": [],
            "responses": {"200": {"description": "the page",
                                  "content": {"text/html": {"schema": {"type": "string"}}}}},
        }},
        PAGE_PATH + "/{asset}": {"get": {
            "operationId": "openapi:ui:asset",
            "summary": "a file of the API page",
            "tags": ["server"],
            "security": [],
            "parameters": [{"name": "asset", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": sorted(ASSETS)}}],
            "responses": {
                "200": {"description": "the file", "content": {
                    media: {"schema": {"type": "string"}}
                    for media in sorted({a.media_type for a in ASSETS.values()})}},
                "304": {"description": "not modified (`If-None-Match`)"},
                "404": _ref("E404"),
            },
        }},
    }
