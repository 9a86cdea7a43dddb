"""What the core actions read from a request, as JSON Schema (OpenAPI 3.1): their bodies and the
query-string arguments they take. The gateway reads these itself; the tables only describe them,
so that `/_openapi` shows a person (and a client generator) what to send."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_OBJECT: Schema = {"type": "object"}
_IDS: Schema = {"type": "object", "properties": {"ids": {"type": "array", "items": {
    "type": "string"}}}, "required": ["ids"]}
_CREDENTIALS: Schema = {"type": "object", "description": "the strategy's credentials, e.g. "
                        "`{\"username\": ..., \"password\": ...}` for `local`"}
_USER: Schema = {"type": "object", "properties": {
    "content": {"type": "object", "properties": {
        "profileIds": {"type": "array", "items": {"type": "string"}}}},
    "credentials": {"type": "object", "additionalProperties": _CREDENTIALS,
                    "description": "per strategy name"},
}}
_ROLE: Schema = {"type": "object", "properties": {"controllers": {
    "type": "object", "description": "`{controller: {actions: {action: true|false}}}`",
    "additionalProperties": {"type": "object", "properties": {
        "actions": {"type": "object", "additionalProperties": {"type": "boolean"}}}}}},
    "required": ["controllers"]}
_PROFILE: Schema = {"type": "object", "properties": {
    "policies": {"type": "array", "items": {"type": "object", "properties": {
        "roleId": {"type": "string"},
        "restrictedTo": {"type": "array", "items": {"type": "object"}}},
        "required": ["roleId"]}},
    "rateLimit": {"type": "integer", "minimum": 0}}, "required": ["policies"]}
_SEARCH: Schema = {"type": "object", "properties": {
    "query": {"type": "object"}, "sort": {}}}
_REQUEST: Schema = {"type": "object", "description": "the API request to check",
                    "properties": {"controller": {"type": "string"},
                                   "action": {"type": "string"}},
                    "required": ["controller", "action"]}
_MAPPING: Schema = {"type": "object", "properties": {"properties": {"type": "object"}},
                    "required": ["properties"]}
_API_KEY: Schema = {"type": "object", "properties": {"description": {"type": "string"}},
                    "required": ["description"]}

BODIES: dict[str, Schema] = {
    "auth:login": _CREDENTIALS,
    "auth:checkToken": {"type": "object", "properties": {"token": {"type": "string"}}},
    "auth:checkRights": _REQUEST,
    "auth:createApiKey": _API_KEY,
    "auth:searchApiKeys": _SEARCH,
    "auth:updateSelf": {"type": "object", "description": "content fields to change"},
    "auth:createMyCredentials": _CREDENTIALS,
    "auth:updateMyCredentials": _CREDENTIALS,
    "auth:validateMyCredentials": _CREDENTIALS,
    "security:createFirstAdmin": _USER,
    "security:createUser": _USER,
    "security:createRestrictedUser": _USER,
    "security:upsertUser": {"type": "object", "properties": {
        "content": {"type": "object"}, "default": {"type": "object"}},
        "required": ["content"]},
    "security:updateUser": {"type": "object", "description": "content fields to change"},
    "security:replaceUser": {"type": "object", "description": "the new content",
                             "properties": {"profileIds": {"type": "array", "items": {
                                 "type": "string"}}}},
    "security:mGetUsers": _IDS,
    "security:mDeleteUsers": _IDS,
    "security:mGetRoles": _IDS,
    "security:mDeleteRoles": _IDS,
    "security:mGetProfiles": _IDS,
    "security:mDeleteProfiles": _IDS,
    "security:searchUsers": _SEARCH,
    "security:searchProfiles": {"type": "object", "properties": {
        "roles": {"type": "array", "items": {"type": "string"}}}},
    "security:searchRoles": {"type": "object", "properties": {
        "controllers": {"type": "array", "items": {"type": "string"}}}},
    "security:searchUsersByCredentials": _SEARCH,
    "security:searchApiKeys": _SEARCH,
    "security:createApiKey": _API_KEY,
    "security:createRole": _ROLE,
    "security:createOrReplaceRole": _ROLE,
    "security:updateRole": _ROLE,
    "security:createProfile": _PROFILE,
    "security:createOrReplaceProfile": _PROFILE,
    "security:updateProfile": _PROFILE,
    "security:createCredentials": _CREDENTIALS,
    "security:updateCredentials": _CREDENTIALS,
    "security:validateCredentials": _CREDENTIALS,
    "security:checkRights": _REQUEST,
    "security:updateUserMapping": _MAPPING,
    "security:updateProfileMapping": _MAPPING,
    "security:updateRoleMapping": _MAPPING,
    "realtime:publish": {"type": "object", "description": "the message (a document) to "
                         "notify subscribers of"},
}

_PAGE = {"from": {"type": "integer", "minimum": 0}, "size": {"type": "integer", "minimum": 0},
         "scroll": {"type": "string", "description": "e.g. `30s`"}}

QUERY: dict[str, dict[str, Schema]] = {
    "auth:login": {"expiresIn": {"type": "string", "description": "e.g. `1h`, or -1"},
                   "cookieAuth": {"type": "boolean"}},
    "auth:refreshToken": {"expiresIn": {"type": "string"}, "cookieAuth": {"type": "boolean"}},
    "auth:logout": {"global": {"type": "boolean"}, "cookieAuth": {"type": "boolean"}},
    "auth:checkToken": {"token": {"type": "string"}, "cookieAuth": {"type": "boolean"}},
    "auth:createToken": {"expiresIn": {"type": "string"}, "singleUse": {"type": "boolean"}},
    "auth:createApiKey": {"_id": {"type": "string"}, "expiresIn": {"type": "string"}},
    "auth:searchApiKeys": _PAGE,
    "security:createApiKey": {"_id": {"type": "string"}, "expiresIn": {"type": "string"}},
    "security:searchApiKeys": _PAGE,
    "security:searchUsers": {**_PAGE, "lang": {"type": "string",
                                               "enum": ["elasticsearch", "koncorde"]}},
    "security:searchProfiles": _PAGE,
    "security:searchRoles": {"from": _PAGE["from"], "size": _PAGE["size"]},
    "security:searchUsersByCredentials": {**_PAGE, "lang": {
        "type": "string", "enum": ["elasticsearch", "koncorde"]}},
    "security:scrollUsers": {"scroll": _PAGE["scroll"]},
    "security:scrollProfiles": {"scroll": _PAGE["scroll"]},
    "security:createFirstAdmin": {"reset": {"type": "boolean"}},
    "security:mGetUsers": {"ids": {"type": "string", "description": "comma-separated ids "
                                   "(the GET route)"}},
    "security:createRole": {"force": {"type": "boolean"}},
    "security:createOrReplaceRole": {"force": {"type": "boolean"}},
    "security:updateRole": {"force": {"type": "boolean"}},
    "server:healthCheck": {"services": {"type": "string", "description":
                                        "comma-separated services, e.g. `storageEngine`"}},
}
