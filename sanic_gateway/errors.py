"""The one place for errors: the classes a client can receive, and the catalogue of their ids.

Each class carries its HTTP status. Each error sent on the wire has an id `domain.subdomain.name`
and a numeric code computed as Kuzzle does (`domain << 24 | subdomain << 16 | error`), so that
Kuzzle's SDKs and docs keep their meaning. Raise catalogued errors with `get("api.assert.x", ...)`.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base of every error a client may receive. `status` is the HTTP status."""

    status = 500
    default_id = "core.fatal.unexpected_error"

    def __init__(
        self,
        message: str = "",
        id: str | None = None,
        code: int | None = None,
        props: list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message or self.__class__.__name__
        self.id = id or self.default_id
        self.code = code if code is not None else CODES.get(self.id, 0)
        self.props = props

    def to_dict(self, *, stack: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "code": self.code,
            "message": self.message,
            "status": self.status,
        }
        if self.props:
            out["props"] = self.props
        if stack:
            out["stack"] = stack
        return out

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.id}: {self.message})"


class BadRequestError(GatewayError):
    status = 400
    default_id = "api.assert.bad_request"


class UnauthorizedError(GatewayError):
    status = 401
    default_id = "security.rights.unauthorized"


class ForbiddenError(GatewayError):
    status = 403
    default_id = "security.rights.forbidden"


class NotFoundError(GatewayError):
    status = 404
    default_id = "api.process.not_found"


class PreconditionError(GatewayError):
    status = 412
    default_id = "api.process.precondition_failed"


class PartialError(GatewayError):
    """Kuzzle's 206: the action did part of its work; `errors` lists what failed."""

    status = 206
    default_id = "services.storage.incomplete_delete"

    def __init__(self, message: str = "", id: str | None = None, code: int | None = None,
                 props: list[Any] | None = None) -> None:
        super().__init__(message, id, code, props)
        self.errors: list[GatewayError] = []

    def to_dict(self, *, stack: str | None = None) -> dict[str, Any]:
        return {**super().to_dict(stack=stack), "errors": [e.to_dict() for e in self.errors],
                "count": len(self.errors)}


class SizeLimitError(GatewayError):
    status = 413
    default_id = "api.assert.size_limit"


class TooManyRequestsError(GatewayError):
    status = 429
    default_id = "api.process.too_many_requests"


class InternalError(GatewayError):
    status = 500
    default_id = "core.fatal.unexpected_error"


class PluginImplementationError(GatewayError):
    status = 500
    default_id = "plugin.runtime.unexpected_error"


class ServiceUnavailableError(GatewayError):
    status = 503
    default_id = "core.fatal.service_unavailable"


class GatewayTimeoutError(GatewayError):
    status = 504
    default_id = "core.fatal.timeout"


CLASSES: dict[str, type[GatewayError]] = {
    cls.__name__: cls
    for cls in (
        GatewayError,
        BadRequestError,
        UnauthorizedError,
        ForbiddenError,
        NotFoundError,
        PartialError,
        PreconditionError,
        SizeLimitError,
        TooManyRequestsError,
        InternalError,
        PluginImplementationError,
        ServiceUnavailableError,
        GatewayTimeoutError,
    )
}

# domain: (code, {subdomain: (code, {name: (code, class name, message template)})})
# Codes follow Kuzzle's catalogue where Kuzzle has the same error; ids of our own come after.
_CATALOGUE: dict[str, tuple[int, dict[str, tuple[int, dict[str, tuple[int, str, str]]]]]] = {
    "core": (0, {
        "fatal": (0, {
            "unexpected_error": (1, "InternalError", "Caught an unexpected error: %s."),
            "service_unavailable": (2, "ServiceUnavailableError", "Service unavailable: %s."),
            "timeout": (6, "GatewayTimeoutError", "Timeout: %s."),
        }),
        "realtime": (1, {
            "room_not_found": (1, "NotFoundError", 'The room "%s" doesn\'t exist'),
            "invalid_scope": (
                4, "BadRequestError",
                'Invalid value for the "scope" parameter (allowed: "all", "in", "out", "none").'),
            "invalid_users": (
                5, "BadRequestError",
                'Invalid value for the "users" parameter (allowed: "all", "in", "out", "none").'),
            "not_subscribed": (8, "PreconditionError", 'User "%s" has not subscribed to "%s".'),
        }),
    }),
    "services": (1, {
        "storage": (1, {
            "write_limit_exceeded": (
                4, "SizeLimitError",
                "The number of documents edited by this request exceeds the configured server "
                "limit."),
            "incomplete_delete": (
                9, "PartialError", "Couldn't delete all the requested documents: %s"),
            "not_found": (11, "NotFoundError", 'Document "%s" not found in "%s".'),
            "unknown_scroll_id": (14, "NotFoundError", "Non-existing or expired scroll identifier."),
            "document_already_exists": (17, "BadRequestError", 'Document "%s" already exists in "%s".'),
            "invalid_argument": (19, "BadRequestError", 'Argument "%s" is invalid (expected: %s)'),
            "invalid_mapping": (21, "BadRequestError", 'Invalid mapping property "mappings.%s".%s'),
            "cannot_change_mapping": (
                26, "BadRequestError", 'Field "%s" already has a mapping, and it cannot be changed'),
            "invalid_search_query": (
                40, "BadRequestError", "Invalid search query: %s"),
            "scroll_duration_too_great": (
                44, "BadRequestError", 'Scroll duration "%s" is too great.'),
            "unknown_query_keyword": (
                45, "BadRequestError",
                'The keyword "%s" is not part of Elasticsearch Query DSL. Are you trying to use a '
                "Koncorde query?"),
            "invalid_query_keyword": (
                47, "BadRequestError", 'The "%s" keyword is not allowed in this query.'),
            "unavailable": (60, "ServiceUnavailableError", "Storage unavailable: %s"),
            "duplicate_value": (
                101, "PreconditionError", 'A document of "%s" already has this value in "%s".'),
        }),
    }),
    "api": (2, {
        "assert": (1, {
            "invalid_type": (1, "BadRequestError", 'Wrong type for argument "%s" (expected: %s)'),
            "invalid_argument": (2, "BadRequestError", 'Invalid argument "%s". Expected: %s'),
            "missing_argument": (3, "BadRequestError", 'Missing argument "%s".'),
            "empty_argument": (4, "BadRequestError", 'The argument "%s" is empty.'),
            "body_required": (8, "BadRequestError", "The request must specify a body."),
            "forbidden_argument": (
                11, "BadRequestError", 'The argument "%s" is not allowed by this API action.'),
            "unexpected_argument": (
                7, "BadRequestError", 'Unexpected argument "%s" (accepted arguments: %s)'),
            "invalid_body": (17, "BadRequestError", "Invalid request body: %s"),
            "bad_request": (18, "BadRequestError", "Bad request: %s"),
            "size_limit": (19, "SizeLimitError", "Size limit exceeded: %s"),
            "too_deep": (
                20, "BadRequestError",
                'Argument "%s" is nested too deeply (at most %s levels of objects and arrays).'),
            "koncorde_dsl_error": (14, "BadRequestError", "%s"),
            "unsupported_protocol": (
                16, "InternalError", 'The protocol "%s" is not supported by the API action "%s".'),
        }),
        "process": (2, {
            "overloaded": (
                2, "ServiceUnavailableError",
                "Request discarded: the gateway is temporarily overloaded."),
            "controller_not_found": (4, "NotFoundError", 'API controller "%s" not found.'),
            "action_not_found": (5, "NotFoundError", 'API action "%s":"%s" not found'),
            "shutting_down": (
                7, "ServiceUnavailableError", "Rejected: this node is shutting down."),
            "too_many_requests": (
                8, "TooManyRequestsError", "Rejected: requests rate limit exceeded for this user."),
            "admin_exists": (9, "PreconditionError", "Admin user is already set."),
            "too_many_logins_requests": (
                13, "TooManyRequestsError", "Rejected: Too many login attempts per second"),
            "not_found": (15, "NotFoundError", "Not found: %s"),
            "precondition_failed": (16, "PreconditionError", "Precondition failed: %s"),
        }),
    }),
    "network": (3, {
        "http": (1, {
            "request_too_large": (1, "SizeLimitError", "Maximum HTTP request size exceeded."),
            "unexpected_error": (2, "BadRequestError", "Caught an unexpected HTTP error: %s"),
            "unsupported_verb": (6, "BadRequestError", 'Unsupported HTTP verb "%s".'),
            "url_not_found": (7, "NotFoundError", "API URL not found: %s."),
            "volatile_parse_failed": (
                11, "BadRequestError",
                'Unable to convert the "x-kuzzle-volatile" HTTP header to JSON: %s'),
            "invalid_header": (20, "BadRequestError", 'Invalid HTTP header "%s": %s'),
        }),
        "websocket": (3, {
            "unexpected_error": (
                1, "BadRequestError", "Caught an unexpected WebSocket error: %s"),
        }),
    }),
    "plugin": (4, {
        "assert": (1, {
            "cannot_load": (2, "PluginImplementationError", 'Unable to load plugin "%s"; %s.'),
        }),
        "strategy": (3, {
            "invalid_verify_resolve": (
                15, "PluginImplementationError",
                'Strategy "%s": verify must return a kuid (str) or {"message": ...}, got %s.'),
            "unknown_kuid": (
                17, "PluginImplementationError", 'Strategy "%s" returned an unknown kuid "%s".'),
            "unauthorized_removal": (
                18, "PluginImplementationError", "Cannot remove strategy %s: owned by another plugin."),
            "strategy_not_found": (
                19, "NotFoundError", "Cannot remove strategy %s: strategy does not exist."),
            "missing_user": (20, "UnauthorizedError", "%s"),
            "missing_method": (
                22, "PluginImplementationError", 'Strategy "%s": missing required method "%s".'),
            "missing_optional_method": (
                21, "PluginImplementationError",
                '"%s" method is optional. The %s strategy plugin has not yet implemented it.'),
            "already_exists": (23, "PluginImplementationError", 'Strategy "%s" already exists.'),
        }),
        "runtime": (2, {
            "failed_init": (
                1, "PluginImplementationError", 'Something went wrong during the init of "%s": %s'),
            "unexpected_error": (
                2, "PluginImplementationError", "Caught an unexpected plugin error: %s"),
            "pipe_timeout": (
                3, "GatewayTimeoutError",
                'Plugin "%s": timeout error. A pipe on the event "%s" exceeded the timeout delay '
                "(%sms). Aborting."),
            "too_many_pipes": (
                4, "ServiceUnavailableError",
                "Request discarded: maximum number of executing pipe functions reached."),
            "too_many_threads": (
                11, "ServiceUnavailableError",
                "Request discarded: all %s threads for plain plugin functions are busy "
                "(limits.plugin_threads)."),
            "invalid_pipe_result": (
                10, "PluginImplementationError",
                'Plugin "%s": the pipe "%s" on "%s" returned a %s; a pipe on a request event '
                "returns the Request (or None to leave it unchanged)."),
        }),
        "controller": (4, {
            "unserializable_response": (
                8, "PluginImplementationError",
                "Unable to serialize response. Are you trying to return the request?"),
        }),
        "context": (6, {
            "invalid_event": (
                7, "PluginImplementationError",
                "Custom event invalid name (%s). Colons are not allowed in custom events."),
        }),
    }),
    "security": (7, {
        "token": (1, {
            "invalid": (1, "UnauthorizedError", "Invalid token."),
            "ttl_exceeded": (4, "BadRequestError", "expiresIn value exceeds maximum allowed value"),
            "expired": (6, "UnauthorizedError", "Token expired"),
            "refresh_forbidden": (8, "UnauthorizedError", "%s cannot be refreshed."),
            "invalid_expiration": (
                9, "BadRequestError", "Token can not be created with this expiration time: %s"),
        }),
        "credentials": (2, {
            "unknown_strategy": (1, "BadRequestError", 'Unknown authentication strategy "%s"'),
            "database_inconsistency": (
                2, "PluginImplementationError",
                "Internal database inconsistency detected: existing credentials found on "
                "non-existing user %s."),
            "rejected": (3, "BadRequestError", "Credentials rejected: %s"),
            "not_found": (4, "NotFoundError", 'No "%s" credentials for user "%s".'),
            "already_exist": (5, "PreconditionError", 'User "%s" already has "%s" credentials.'),
            "username_taken": (101, "PreconditionError", 'Login "%s" is already used.'),
            "invalid_username": (102, "BadRequestError", "Invalid username: %s"),
        }),
        "user": (4, {
            "already_exists": (1, "PreconditionError", 'User "%s" already exists.'),
            "not_found": (2, "NotFoundError", 'User "%s" not found.'),
            "anonymous_profile_required": (
                3, "BadRequestError", "The anonymous user must be assigned to the anonymous profile"),
            "no_profile": (7, "BadRequestError", 'User "%s" needs at least one profile.'),
        }),
        "role": (5, {
            "not_found": (1, "NotFoundError", 'Role "%s" not found.'),
            "cannot_delete": (
                3, "BadRequestError",
                "The following roles are protected and cannot be deleted: anonymous, default, admin"),
            "in_use": (4, "PreconditionError", 'The role "%s" is still used and cannot be deleted.'),
            "invalid_rights": (6, "BadRequestError", 'Invalid rights for role "%s" (path: "%s"): %s'),
            "unknown_controller": (
                9, "BadRequestError",
                "Trying to set role %s with a non-existing controller '%s'. %s"),
            "unknown_action": (
                10, "BadRequestError",
                "Trying to set role %s with a non-existing action '%s' in controller '%s'. %s"),
        }),
        "profile": (6, {
            "not_found": (1, "NotFoundError", 'Profile "%s" not found.'),
            "cannot_delete": (
                2, "BadRequestError",
                "The following profiles are protected and cannot be deleted: anonymous, default, "
                "admin"),
            "in_use": (3, "PreconditionError",
                       'The profile "%s" is still used and cannot be deleted.'),
            "invalid": (7, "BadRequestError", 'Invalid profile "%s": %s'),
        }),
        "oauth": (8, {
            "invalid_state": (1, "UnauthorizedError", "OAuth state missing, unknown, expired or already used."),
            "denied": (2, "UnauthorizedError", 'The provider "%s" refused the login: %s'),
            "provider_unavailable": (3, "ServiceUnavailableError", 'OAuth provider "%s" unavailable: %s'),
            "invalid_token": (4, "UnauthorizedError", 'Invalid token from provider "%s": %s'),
            "missing_claim": (5, "UnauthorizedError", 'Provider "%s" gave no "%s" claim.'),
            "missing_token": (6, "BadRequestError", 'POST /_login/%s needs a body {"id_token": ...} or {"access_token": ...}.'),
            "exchange_failed": (7, "UnauthorizedError", 'Provider "%s" refused the code exchange: %s'),
        }),
        "rights": (3, {
            "unauthorized": (
                1, "UnauthorizedError",
                'Unauthorized: authentication required to execute the action "%s:%s".'),
            "forbidden": (
                2, "ForbiddenError",
                'Insufficient permissions to execute the action "%s:%s" (User "%s").'),
        }),
    }),
}

CATALOGUE: dict[str, tuple[int, type[GatewayError], str]] = {}
for _domain, (_dcode, _subs) in _CATALOGUE.items():
    for _sub, (_scode, _errors) in _subs.items():
        for _name, (_ecode, _cls, _msg) in _errors.items():
            CATALOGUE[f"{_domain}.{_sub}.{_name}"] = (
                (_dcode << 24) | (_scode << 16) | _ecode, CLASSES[_cls], _msg)

CODES: dict[str, int] = {key: value[0] for key, value in CATALOGUE.items()}


def get(error_id: str, *args: Any) -> GatewayError:
    """Build the catalogued error `error_id`, its message formatted with `args`."""
    code, cls, template = CATALOGUE[error_id]
    try:
        message = template % args if args else template.replace("%s", "").strip()
    except TypeError:
        message = template + " " + " ".join(map(str, args))
    return cls(message, id=error_id, code=code, props=[str(a) for a in args] or None)


def wrap(exc: BaseException) -> GatewayError:
    """Any exception as a GatewayError: gateway errors as they are, others as a 500."""
    if isinstance(exc, GatewayError):
        return exc
    return get("core.fatal.unexpected_error", f"{type(exc).__name__}: {exc}")
