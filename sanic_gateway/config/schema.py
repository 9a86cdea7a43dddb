"""The Cerberus schema of gateway.yaml: data only, the checks live in validate.py.

Conventions: every mapping with known keys sets `allow_unknown` explicitly, because Cerberus
otherwise inherits it from the parent (a custom protocol's leniency would leak into `http`).
`meta.expects` words a type error for the user where the bare type would mislead.
`coerce` names refer to `_normalize_coerce_<name>` methods of the validator in validate.py.
"""

from __future__ import annotations

from typing import Any

Rules = dict[str, Any]


def _mapping(fields: dict[str, Rules], **extra: Any) -> Rules:
    return {"type": "dict", "schema": fields, "allow_unknown": False, **extra}


def _free_mapping(**extra: Any) -> Rules:
    """A mapping whose content is the user's (a plugin's `config`, a role): kept as is."""
    return {"type": "dict", "allow_unknown": True, **extra}


def _string(**extra: Any) -> Rules:
    return {"type": "string", **extra}


def _optional_string() -> Rules:
    return {"type": "string", "nullable": True, "default": None}


def _boolean(default: bool) -> Rules:
    return {"type": "boolean", "default": default}


def _duration(default: float) -> Rules:
    return {"type": "float", "coerce": "duration", "default": default,
            "meta": {"expects": "a duration (e.g. 500ms, 5s, 1h)"}}


def _size(default: int) -> Rules:
    return {"type": "integer", "coerce": "size", "default": default,
            "meta": {"expects": "a size (e.g. 512KB, 1MB)"}}


def _port(default: int) -> Rules:
    return {"type": "integer", "min": 0, "max": 65535, "default": default}


def _function_name(**extra: Any) -> Rules:
    return {"type": "string", "meta": {"expects": "a function name"}, **extra}


BUILTIN_PROTOCOLS = ("http", "websocket", "mqtt")

PROTOCOLS: dict[str, Rules] = {
    "http": _mapping({"enabled": _boolean(True)}, default={}),
    "websocket": _mapping(
        {"enabled": _boolean(True), "idle_timeout": _duration(60.0),
         "send_queue": {"type": "integer", "min": 1, "default": 50},
         "max_in_flight": {"type": "integer", "min": 1, "default": 100}}, default={}),
    "mqtt": _mapping(
        {"enabled": _boolean(False), "port": _port(1883), "allow_pubsub": _boolean(False),
         "send_queue": {"type": "integer", "min": 1, "default": 1000},
         "max_in_flight": {"type": "integer", "min": 1, "default": 100},
         # none: server.max_request_size + 64KB (a request a little over gets its 413)
         "max_packet_size": {"type": "integer", "coerce": "size", "min": 256,
                             "meta": {"expects": "a size (e.g. 512KB, 1MB)"}}},
        default={}),
}

# Any other name under server.protocols is a custom protocol; its other options are its own.
CUSTOM_PROTOCOL = _mapping(
    {"module": _string(), "path": _string(), "entry_point": _string(), "enabled": _boolean(True)},
    allow_unknown=True)

SERVER = _mapping(
    {
        "host": _string(default="127.0.0.1"),
        "port": _port(7512),
        "workers": {"type": "integer", "min": 1, "default": 1},
        "max_request_size": _size(1048576),
        "request_timeout": {**_duration(30.0), "min": 0.001},
        "keep_alive_timeout": {**_duration(15.0), "min": 0.0},
        # on a reload, how long an old worker keeps its open connections (WebSockets, MQTT)
        "drain_timeout": {**_duration(30.0), "min": 0.0},
        "max_connections": {"type": "integer", "min": 0, "default": 10000},
        "metrics": _boolean(True),  # Prometheus counters (GET /metrics)
        "access_log": _boolean(False),  # a line per request (--access-log)
        "log_format": _string(allowed=["text", "json"], default="text"),  # --log-format
        "protocols": _mapping(PROTOCOLS, allow_unknown=CUSTOM_PROTOCOL, default={}),
    },
    default={},
)

LIMITS = _mapping(
    {
        "pipe_timeout": _duration(5.0),
        "pipe_warn_time": _duration(0.5),
        "max_concurrent_pipes": {"type": "integer", "min": 1, "default": 50},
        "pipes_buffer_size": {"type": "integer", "min": 0, "default": 50000},
        "hooks_buffer_size": {"type": "integer", "min": 1, "default": 5000},
        "plugin_threads": {"type": "integer", "min": 1, "default": 16},
        # plugins with `threads: N`: unacknowledged events per worker process (beyond, dropped)
        "hook_workers_buffer_size": {"type": "integer", "min": 1, "default": 1000},
        # a worker silent that long (a hook stuck, or a hung process) is killed and restarted
        "hook_workers_timeout": {**_duration(60.0), "min": 0.1},
        "login_attempts_per_second": {"type": "integer", "min": 0, "default": 1},
        "login_failures_per_username": {"type": "integer", "min": 0, "default": 5},
        "login_failure_delay": _duration(1.0),
        "login_failure_max_delay": _duration(60.0),
        "request_timeout": _duration(60.0),
    },
    default={},
)

STORAGE = _string(default="sqlite:///./data/gateway.db", check_with="storage_url")

CLUSTER = _mapping(
    {"redis": {"type": "string", "nullable": True, "default": None, "coerce": "empty_to_none",
               "check_with": "redis_url"},
     # Redis keys and channels start with it: several clusters may share one Redis
     "prefix": _string(default="sanic-gateway", regex=r"[A-Za-z0-9_.-]+"),
     "heartbeat": {**_duration(1.0), "min": 0.05},
     # a member silent that long is dropped (at least twice the heartbeat)
     "node_timeout": {**_duration(3.0), "min": 0.1}},
    default={},
)

def _url() -> Rules:
    return {**_optional_string(), "check_with": "http_url"}


OAUTH2 = _mapping({
    "server_metadata_url": _url(),
    "authorize_url": _url(),
    "access_token_url": _url(),
    "userinfo_url": _url(),
    "jwks_uri": _url(),
    "issuer": _optional_string(),
    "redirect_uri": _url(),
    "client_id": _optional_string(),
    "client_secret": _optional_string(),
    "scope": _string(default="openid email profile"),
    "kuid_claim": _string(default="sub", empty=False),
    "profiles": {"type": "list", "schema": _string(empty=False), "default": ["default"],
                 "minlength": 1},
    "success_redirect": _url(),
    "timeout": _duration(10.0),
})

AUTH = _mapping(
    {
        "jwt": _mapping(
            {
                "secret": _string(default=""),
                "algorithm": _string(default="HS256", allowed=["HS256", "HS384", "HS512"]),
                "expires_in": _duration(3600.0),
                "max_ttl": {**_duration(-1.0), "coerce": "duration_or_unlimited",
                            "meta": {"expects": "a duration (e.g. 1h) or -1 for unlimited"}},
            },
            default={},
        ),
        "strategies": _mapping(
            {"local": _mapping({})},
            allow_unknown=_mapping({"oauth2": OAUTH2}),
            default={"local": {}},
        ),
    },
    default={},
)

SECURITY = _mapping(
    {
        section: {"type": "dict", "default": {}, "valuesrules": _free_mapping()}
        for section in ("roles", "profiles", "users")
    },
    default={},
)

# Kuzzle's vault (vault.py): where the encrypted secrets file is, which variable holds its key
VAULT = _mapping(
    {"file": {**_optional_string(), "empty": False},
     "key_env": _string(default="KUZZLE_VAULT_KEY", regex=r"[A-Za-z_][A-Za-z0-9_]*",
                        meta={"expects": "the name of an environment variable"})},
    default={},
)

# hooks and pipes: `event: function` or `event: [function, ...]`, normalized to lists.
EVENT_LISTENERS = {
    "type": "dict",
    "default": {},
    "valuesrules": {"type": "list", "coerce": "listify", "schema": _function_name(),
                    "meta": {"expects": "a function name or a list of function names"}},
}

ROUTE = _mapping({
    "verb": _string(required=True, coerce="lower",
                    allowed=["get", "post", "put", "patch", "delete", "head"]),
    "url": _string(required=True),
    "controller": _string(required=True),
    "action": _string(required=True),
})

STRATEGY_METHODS = _mapping({
    **{name: _function_name(required=True)
       for name in ("exists", "create", "update", "delete", "validate", "verify")},
    **{name: _function_name() for name in ("getInfo", "getById", "afterRegister")},
}, required=True)

PLUGIN_STRATEGY = _mapping({
    "fields": {"type": "list", "schema": _string(), "default": []},
    "config": _free_mapping(default={}),
    "methods": STRATEGY_METHODS,
})

PLUGIN = _mapping({
    "module": _string(),
    "path": _string(),
    "entry_point": _string(),
    "config": _free_mapping(default={}),
    "threads": {"type": "integer", "min": 0, "default": 0},
    "hooks": EVENT_LISTENERS,
    "pipes": EVENT_LISTENERS,
    "controllers": {"type": "dict", "default": {},
                    "valuesrules": {"type": "dict", "valuesrules": _function_name(),
                                    "meta": {"expects": "a mapping of action: function"}}},
    "routes": {"type": "list", "default": [], "schema": ROUTE},
    "strategies": {"type": "dict", "default": {}, "valuesrules": PLUGIN_STRATEGY},
})

SCHEMA: dict[str, Rules] = {
    "server": SERVER,
    "limits": LIMITS,
    "storage": STORAGE,
    "cluster": CLUSTER,
    "auth": AUTH,
    "security": SECURITY,
    "vault": VAULT,
    "plugins": {"type": "dict", "default": {}, "valuesrules": PLUGIN},
}
