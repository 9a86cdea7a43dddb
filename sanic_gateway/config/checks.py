"""Semantic checks of a normalized gateway.yaml: what a schema cannot say.

Names that end up in URLs, event names and Python attribute lookups, routes that point at
declared controllers and actions, "exactly one of" keys, and the `security:` entries (checked
by the code that applies them at start). These run on the normalized document even when
Cerberus found problems, so every value is type-checked here before use: one run reports
everything.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from typing import Any

from .issues import ConfigIssue, KeyPath, did_you_mean
from .schema import BUILTIN_PROTOCOLS

MIN_SECRET_LENGTH = 32  # auth.jwt.secret: shorter keys are guessable offline

MakeIssue = Callable[..., ConfigIssue]

NAME = re.compile(r"[A-Za-z0-9_-]+")
ACTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# `controller:event`, more segments allowed (`core:realtime:user:subscribe:after`); a plugin
# controller reads `plugin/controller:beforeAction`; `*` only last (`document:before*`).
EVENT = re.compile(r"[\w./-]+(?::[\w./-]+)*:(?:[\w./-]+\*?|\*)")
MODULE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)?")
PLUGIN_SOURCES = ("module", "path", "entry_point")
PROTOCOL_SOURCES = ("module", "path", "entry_point")

_NAME_RULE = "use letters, digits, '_' and '-'"


def check(document: dict[str, Any], issue: MakeIssue) -> list[ConfigIssue]:
    """Every semantic problem of the document, in file order as far as possible."""
    found: list[ConfigIssue] = []
    server = document.get("server")
    if isinstance(server, dict) and isinstance(server.get("protocols"), dict):
        for name, spec in server["protocols"].items():
            if name not in BUILTIN_PROTOCOLS and isinstance(spec, dict):
                found += _check_protocol(("server", "protocols", name), name, spec, issue)
    auth = document.get("auth")
    jwt = auth.get("jwt") if isinstance(auth, dict) else None
    secret = jwt.get("secret") if isinstance(jwt, dict) else None
    if isinstance(secret, str) and secret and len(secret) < MIN_SECRET_LENGTH:
        found.append(issue(("auth", "jwt", "secret"),
                           f"too short: at least {MIN_SECRET_LENGTH} characters (or empty: "
                           "one is then generated and kept in storage)"))
    if isinstance(auth, dict) and isinstance(auth.get("strategies"), dict):
        for name, spec in auth["strategies"].items():
            found += _check_name(("auth", "strategies", name), "strategy", name, issue)
            if name != "local":
                found += _check_oauth2(("auth", "strategies", name), spec, issue)
    plugins = document.get("plugins")
    if isinstance(plugins, dict):
        for name, spec in plugins.items():
            where = ("plugins", name)
            found += _check_name(where, "plugin", name, issue)
            if isinstance(spec, dict):
                found += _check_plugin(where, spec, issue)
    # the declared roles, profiles and users: what would stop the start, by the same checks
    from ..security.declared import check_declared
    found += check_declared(document, issue)
    found += _check_cluster(document, issue)
    return found


def _check_cluster(document: dict[str, Any], issue: MakeIssue) -> list[ConfigIssue]:
    """Cluster members share users, tokens and documents through storage: one SQLite file
    belongs to one machine (and serializes writers), so cluster mode needs PostgreSQL. Each
    check adds to the list: one run shows every problem of the section."""
    cluster, storage = document.get("cluster"), document.get("storage")
    if not isinstance(cluster, dict):
        return []
    found = []
    if (isinstance(cluster.get("redis"), str) and isinstance(storage, str)
            and storage.startswith("sqlite")):
        found.append(issue(("storage",), "cluster mode (cluster.redis) needs PostgreSQL "
                           "storage (postgresql://...): the members share users, tokens and "
                           "documents through it, and a SQLite file belongs to one machine"))
    beat, timeout = cluster.get("heartbeat"), cluster.get("node_timeout")
    if (isinstance(beat, int | float) and isinstance(timeout, int | float)
            and timeout < 2 * beat):
        found.append(issue(("cluster", "node_timeout"), f"must be at least twice "
                           f"cluster.heartbeat ({beat:g}s): a member silent for {timeout:g}s "
                           "would be dropped between two of its own heartbeats"))
    return found


def _check_oauth2(path: KeyPath, spec: Any, issue: MakeIssue) -> list[ConfigIssue]:
    """An OAuth2/OIDC provider needs a client id and either discovery or explicit endpoints."""
    oauth2 = spec.get("oauth2") if isinstance(spec, dict) else None
    if not isinstance(oauth2, dict):
        return [issue(path, "a strategy other than 'local' needs an 'oauth2:' block "
                            "(plugin strategies go under plugins.<name>.strategies)")]
    where = (*path, "oauth2")
    found = []
    if not oauth2.get("client_id"):
        found.append(issue((*where, "client_id"), "missing 'client_id'"))
    if not oauth2.get("server_metadata_url"):
        missing = [k for k in ("authorize_url", "access_token_url") if not oauth2.get(k)]
        if not (oauth2.get("userinfo_url") or oauth2.get("jwks_uri")):
            missing.append("userinfo_url (or jwks_uri)")
        if missing:
            found.append(issue(where, "give 'server_metadata_url' (OpenID discovery) or the "
                                      f"endpoints: missing {', '.join(repr(m) for m in missing)}"))
        if oauth2.get("jwks_uri") and not oauth2.get("issuer"):
            found.append(issue((*where, "jwks_uri"),
                               "give 'issuer' with 'jwks_uri': ID tokens are checked against it"))
    return found


def _check_name(path: KeyPath, what: str, name: Any, issue: MakeIssue) -> list[ConfigIssue]:
    if isinstance(name, str) and NAME.fullmatch(name):
        return []
    if not isinstance(name, str):
        return [issue(path, _not_a_string(what, name))]
    return [issue(path, f"invalid {what} name {name!r} ({_NAME_RULE})")]


def _not_a_string(what: str, name: Any) -> str:
    # YAML reads `123:` as a number and `on:`/`yes:` as booleans: the fix is quotes.
    return f"invalid {what} name {name!r}: YAML did not read it as text; write it in quotes"


def _check_sources(path: KeyPath, spec: dict[str, Any], sources: tuple[str, ...],
                   issue: MakeIssue) -> list[ConfigIssue]:
    """Exactly one of `sources` names where the code comes from."""
    given = [key for key in sources if spec.get(key) is not None]
    names = ", ".join(repr(s) for s in sources[:-1]) + f" or {sources[-1]!r}"
    if not given:
        return [issue(path, f"missing {names}")]
    if len(given) > 1:
        both = " and ".join(repr(g) for g in given)
        return [issue(path, f"give only one of {names} (found {both})")]
    key = given[0]
    value = spec[key]
    if not isinstance(value, str):
        return []  # Cerberus reported the type
    if key == "module" and not MODULE.fullmatch(value):
        return [issue((*path, key), f"invalid module reference {value!r} "
                                    "(use package.module or package.module:Class)")]
    if not value.strip():
        return [issue((*path, key), f"{key!r} must not be empty")]
    return []


def _check_protocol(path: KeyPath, name: Any, spec: dict[str, Any],
                    issue: MakeIssue) -> list[ConfigIssue]:
    found = _check_name(path, "protocol", name, issue)
    if not any(spec.get(key) is not None for key in PROTOCOL_SOURCES):
        # `htp: {...}` is most likely a typo of a built-in protocol, not a custom one.
        return [*found, issue(path, f"unknown protocol {name!r}: a custom protocol needs "
                                    "'module', 'path' or 'entry_point'",
                                    did_you_mean(name, BUILTIN_PROTOCOLS))]
    return found + _check_sources(path, spec, PROTOCOL_SOURCES, issue)


def _check_plugin(path: KeyPath, spec: dict[str, Any], issue: MakeIssue) -> list[ConfigIssue]:
    found = _check_sources(path, spec, PLUGIN_SOURCES, issue)
    for section in ("hooks", "pipes"):
        listeners = spec.get(section)
        if isinstance(listeners, dict):
            found += _check_listeners((*path, section), listeners, issue)
    controllers = spec.get("controllers")
    if isinstance(controllers, dict):
        found += _check_controllers((*path, "controllers"), controllers, issue)
    else:
        controllers = {}
    routes = spec.get("routes")
    if isinstance(routes, list):
        found += _check_routes((*path, "routes"), routes, controllers, issue)
    strategies = spec.get("strategies")
    if isinstance(strategies, dict):
        for name, strategy in strategies.items():
            where = (*path, "strategies", name)
            found += _check_name(where, "strategy", name, issue)
            methods = strategy.get("methods") if isinstance(strategy, dict) else None
            if isinstance(methods, dict):
                for method, function in methods.items():
                    found += _check_function((*where, "methods", method), function, issue)
    return found


def _check_function(path: KeyPath, function: Any, issue: MakeIssue) -> list[ConfigIssue]:
    if not isinstance(function, str) or (function.isidentifier()
                                         and not keyword.iskeyword(function)):
        return []  # a wrong type was reported by Cerberus
    return [issue(path, f"invalid function name {function!r} (must be a Python identifier)")]


def _check_listeners(path: KeyPath, listeners: dict[Any, Any],
                     issue: MakeIssue) -> list[ConfigIssue]:
    found = []
    for event, functions in listeners.items():
        where = (*path, event)
        if not isinstance(event, str):
            found.append(issue(where, _not_a_string("event", event)))
        elif not EVENT.fullmatch(event):
            found.append(issue(where, f"invalid event name {event!r} (expected "
                                      "'controller:event' such as 'document:beforeCreate'; "
                                      "'*' only at the end)"))
        if isinstance(functions, list):
            for index, function in enumerate(functions):
                # `event: name` became a one-item list: point at the event, not at an index.
                at = (*where, index) if len(functions) > 1 else where
                found += _check_function(at, function, issue)
    return found


def _check_controllers(path: KeyPath, controllers: dict[Any, Any],
                       issue: MakeIssue) -> list[ConfigIssue]:
    found = []
    for controller, actions in controllers.items():
        where = (*path, controller)
        found += _check_name(where, "controller", controller, issue)
        if not isinstance(actions, dict):
            continue
        for action, function in actions.items():
            if not (isinstance(action, str) and ACTION.fullmatch(action)):
                found.append(issue((*where, action), f"invalid action name {action!r} (use "
                                   "letters, digits and '_', not starting with a digit)"))
            found += _check_function((*where, action), function, issue)
    return found


def _check_routes(path: KeyPath, routes: list[Any], controllers: dict[Any, Any],
                  issue: MakeIssue) -> list[ConfigIssue]:
    found = []
    seen: dict[tuple[str, str], int] = {}
    for index, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        where = (*path, index)
        verb, url = route.get("verb"), route.get("url")
        controller, action = route.get("controller"), route.get("action")
        if isinstance(url, str):
            if not url.startswith("/"):
                found.append(issue((*where, "url"), f"url must start with '/', got {url!r}"))
            elif isinstance(verb, str):
                # `/foo/:id` and `/foo/:name` are the same route.
                key = (verb, re.sub(r":[^/]+", ":", url))
                if key in seen:
                    found.append(issue(where, f"duplicate route {verb.upper()} {url} "
                                              f"(same as routes[{seen[key]}])"))
                else:
                    seen[key] = index
        if not isinstance(controller, str):
            continue
        if controller not in controllers:
            close = did_you_mean(controller, controllers)
            message = f"controller {controller!r} is not declared in this plugin's controllers"
            if close is None:
                message += f" (declared: {', '.join(map(str, controllers)) or 'none'})"
            found.append(issue((*where, "controller"), message, close))
            continue
        actions = controllers[controller]
        if isinstance(action, str) and isinstance(actions, dict) and action not in actions:
            found.append(issue((*where, "action"),
                               f"action {action!r} is not declared in controller {controller!r}",
                               did_you_mean(action, actions)))
    return found
