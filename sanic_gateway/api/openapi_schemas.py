"""What the core actions read from a request, as JSON Schema (OpenAPI 3.1): their bodies and the
query-string arguments they take. The gateway reads these itself; the tables only describe them,
so that `/_openapi` shows a person (and a client generator) what to send."""

from __future__ import annotations

from typing import Any

from ..storage.base import MAX_FROM, MAX_SIZE

Schema = dict[str, Any]

_OBJECT: Schema = {"type": "object"}
_IDS: Schema = {"type": "object", "properties": {"ids": {"type": "array", "items": {
    "type": "string"}}}, "required": ["ids"]}
_NON_EMPTY: Schema = {"type": "object", "minProperties": 1}
_CREDENTIALS: Schema = {"type": "object", "description": "the strategy's credentials, e.g. "
                        "`{\"username\": ..., \"password\": ...}` for `local`"}
_PROFILE_IDS: Schema = {"type": "array", "items": {"type": "string"}, "minItems": 1}
_BY_STRATEGY: Schema = {"type": "object", "additionalProperties": _CREDENTIALS,
                        "description": "credentials per strategy name"}
_USER: Schema = {"type": "object", "properties": {
    "content": {"type": "object", "properties": {"profileIds": _PROFILE_IDS},
                "required": ["profileIds"]},
    "credentials": _BY_STRATEGY}, "required": ["content"]}
# createFirstAdmin and createRestrictedUser choose the profiles themselves
_USER_WITHOUT_PROFILES: Schema = {"type": "object", "properties": {
    "content": {"type": "object", "description": "the user's content, without `profileIds`"},
    "credentials": _BY_STRATEGY}}
_CHANGES: Schema = {"type": "object", "minProperties": 1,
                    "description": "the content fields to change"}
_ROLE: Schema = {"type": "object", "properties": {"controllers": {
    "type": "object", "description": "`{controller: {actions: {action: true|false}}}`",
    "additionalProperties": {"type": "object", "properties": {
        "actions": {"type": "object", "additionalProperties": {"type": "boolean"}}}}}},
    "required": ["controllers"]}
_PROFILE: Schema = {"type": "object", "properties": {
    "policies": {"type": "array", "items": {"type": "object", "properties": {
        "roleId": {"type": "string"},
        "restrictedTo": {"type": "array", "items": {"type": "object"}}},
        "required": ["roleId"]}, "minItems": 1},
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
    "auth:updateSelf": _CHANGES,
    "auth:createMyCredentials": _CREDENTIALS,
    "auth:updateMyCredentials": _CREDENTIALS,
    "auth:validateMyCredentials": _CREDENTIALS,
    "security:createFirstAdmin": _USER_WITHOUT_PROFILES,
    "security:createUser": _USER,
    "security:createRestrictedUser": _USER_WITHOUT_PROFILES,
    "security:upsertUser": {"type": "object", "properties": {
        "content": {"type": "object", "properties": {"profileIds": _PROFILE_IDS},
                    "required": ["profileIds"]},
        "default": {"type": "object", "description": "content added when the user is created"},
        "credentials": _BY_STRATEGY},
        "required": ["content"]},
    "security:updateUser": _CHANGES,
    "security:replaceUser": {"type": "object", "description": "the new content",
                             "properties": {"profileIds": _PROFILE_IDS},
                             "required": ["profileIds"]},
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
    "realtime:publish": {**_NON_EMPTY, "description": "the message (a document) to notify "
                                                      "subscribers of"},
}

_EXPIRES_IN: Schema = {"type": "string", "pattern": r"^(-1|\d+(\.\d+)?(ms|s|m|h|d)?)$",
                       "description": "milliseconds, or a duration (`30s`, `1h`, `7d`); "
                                      "-1: never, where `auth.jwt.max_ttl` allows it"}
_PAGE = {"from": {"type": "integer", "minimum": 0, "maximum": MAX_FROM},
         "size": {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
         "scroll": {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)?$",
                    "description": "how long the cursor lives, e.g. `30s` (at most `1m`)"}}

QUERY: dict[str, dict[str, Schema]] = {
    "auth:login": {"expiresIn": _EXPIRES_IN,
                   "cookieAuth": {"type": "boolean"}},
    "auth:refreshToken": {"expiresIn": _EXPIRES_IN, "cookieAuth": {"type": "boolean"}},
    "auth:logout": {"global": {"type": "boolean"}, "cookieAuth": {"type": "boolean"}},
    "auth:checkToken": {"token": {"type": "string"}, "cookieAuth": {"type": "boolean"}},
    "auth:createToken": {"expiresIn": _EXPIRES_IN, "singleUse": {"type": "boolean"}},
    "auth:createApiKey": {"_id": {"type": "string"}, "expiresIn": _EXPIRES_IN},
    "auth:searchApiKeys": _PAGE,
    "security:createApiKey": {"_id": {"type": "string"}, "expiresIn": _EXPIRES_IN},
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
    "security:mGetUsers": {"ids": {"type": "string", "minLength": 1,
                                   "description": "comma-separated ids "
                                   "(the GET route)"}},
    "security:createRole": {"force": {"type": "boolean"}},
    "security:createOrReplaceRole": {"force": {"type": "boolean"}},
    "security:updateRole": {"force": {"type": "boolean"}},
    "server:healthCheck": {"services": {"type": "string", "description":
                                        "comma-separated services, e.g. `storageEngine`"}},
}

# path parameters that take only some values
PATH: dict[str, dict[str, Schema]] = {
    "security:refresh": {"collection": {"type": "string",
                                        "enum": ["users", "profiles", "roles"]}},
}


def body_required(schema: Schema) -> bool:
    """Whether an action refuses a request without a body (400 `api.assert.body_required`)."""
    return bool(schema.get("required") or schema.get("minProperties"))
