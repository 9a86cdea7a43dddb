"""The gateway.yaml reference page, generated from the Cerberus schema so that it cannot drift.

Types, defaults, limits and allowed values come from `sanic_gateway.config.schema`; only the
descriptions are written here, in DESCRIPTIONS, one per key path. A key of the schema without a
description, or a description of a key the schema no longer has, is an error (the docs tests
and `mkdocs build --strict` fail on it).

    python tools/config_reference.py          # rewrite the generated part of the page
    python tools/config_reference.py --check  # exit 1 if the page is out of date
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sanic_gateway.config.schema import SCHEMA

PAGE = Path(__file__).resolve().parent.parent / "docs" / "reference" / "gateway-yaml.md"
BEGIN = "<!-- BEGIN GENERATED from sanic_gateway/config/schema.py by tools/config_reference.py -->"
END = "<!-- END GENERATED -->"

# Paths: dotted keys; `<name>` stands for a key the user chooses, `[]` for an item of a list.
DESCRIPTIONS: dict[str, str] = {
    # -- server ------------------------------------------------------------------------------
    "server": "The listening socket, its connections and the protocols served.",
    "server.host": "Interface to listen on (`run --host` overrides it).",
    "server.port": "Port to listen on (`run --port` overrides it). `0` picks a free port.",
    "server.workers": "Number of worker processes sharing the socket (`run --workers` "
                      "overrides it); see [Operations](../operations/index.md#workers).",
    "server.max_request_size": "Larger request bodies are answered 413; a larger WebSocket "
                               "frame closes the connection (1009).",
    "server.request_timeout": "Time a client has to send a whole request, headers and body, "
                              "counted from its first byte. Beyond, 408 and the connection is "
                              "closed: a client trickling bytes (slowloris) cannot hold a "
                              "connection.",
    "server.drain_timeout": "After a reload (SIGHUP), how long a worker of the previous "
                            "configuration keeps its open connections (WebSocket, MQTT) before "
                            "closing them (1001); it stops earlier once none is left. See "
                            "[Reload](../operations/reload.md).",
    "server.keep_alive_timeout": "An idle keep-alive connection (and a connection that sends "
                                 "nothing) is closed after this time.",
    "server.max_connections": "Open connections per worker, HTTP and WebSocket alike. One "
                              "more is answered 503 and closed at once; refusals are logged "
                              "at most every 10 seconds. `0`: unlimited. `run` raises the "
                              "process's soft open-files limit towards the hard one to fit "
                              "it, and warns when even the hard limit is lower.",
    "server.metrics": "Prometheus metrics at `GET /metrics` ([Metrics](../operations/metrics.md)); "
                      "`false`: not counted, and `/metrics` answers 404.",
    "server.access_log": "A line per request: method, path, status, duration, request id, "
                         "user (`run --access-log` and `--dev` turn it on too).",
    "server.log_format": "`text`, or `json`: one JSON object per line, for log shippers "
                         "(`run --log-format` overrides it; [Logs](../operations/logs.md)).",
    "server.protocols": "The protocols served: the built-in `http`, `websocket` and `mqtt`, "
                        "and custom ones under names of your choice.",
    "server.protocols.http": "HTTP, Kuzzle's routes and the plugins' routes.",
    "server.protocols.http.enabled": "`false`: no HTTP routes (WebSocket still answers "
                                     "upgrades on the port).",
    "server.protocols.websocket": "WebSocket on the HTTP port, path `/` "
                                  "([WebSocket](../protocols/websocket.md)).",
    "server.protocols.websocket.enabled": "`false`: upgrades are refused.",
    "server.protocols.websocket.idle_timeout": "A connection silent for half of it is pinged, "
                                               "and closed if still silent after the other "
                                               "half.",
    "server.protocols.websocket.send_queue": "Messages that may wait for a client whose "
                                             "socket is full; one more and the client is "
                                             "disconnected (1011).",
    "server.protocols.websocket.max_in_flight": "Requests of one connection running at once; "
                                                "beyond, the connection is not read until one "
                                                "ends.",
    "server.protocols.mqtt": "An embedded MQTT 3.1.1 broker speaking Kuzzle's MQTT protocol "
                             "([MQTT](../protocols/mqtt.md)).",
    "server.protocols.mqtt.enabled": "`true`: start the broker.",
    "server.protocols.mqtt.port": "Port of the broker, on `server.host`; `0` picks a free "
                                  "port.",
    "server.protocols.mqtt.allow_pubsub": "`true`: clients may also publish and subscribe "
                                          "among themselves (never on `Kuzzle/response` nor "
                                          "on live channel topics).",
    "server.protocols.mqtt.send_queue": "Messages that may wait for a client that stops "
                                        "reading; one more and it is disconnected.",
    "server.protocols.mqtt.max_in_flight": "Requests of one client running at once; "
                                           "beyond, the client's connection is not read "
                                           "until one ends.",
    "server.protocols.mqtt.max_packet_size": "Largest MQTT packet a client may send; a "
                                             "longer one closes its connection, unread. "
                                             "Default: `server.max_request_size` + 64KB (a "
                                             "request a little over `max_request_size` gets "
                                             "its 413 envelope).",
    "server.protocols.<name>": "A custom protocol ([Custom protocols](../protocols/custom.md))"
                               ": exactly one of `module`, `path` or `entry_point`, plus "
                               "options of its own (any other key). A name with none of them "
                               "is reported as an unknown protocol, with a \"did you mean\" for "
                               "typos like `htp`.",
    "server.protocols.<name>.module": "`package.module:Class`, imported with the folder of "
                                      "gateway.yaml first on the import path.",
    "server.protocols.<name>.path": "A folder, relative to gateway.yaml, holding a Python "
                                    "package and a `manifest.json` (`name`, "
                                    "`gatewayVersion`).",
    "server.protocols.<name>.entry_point": "An installed entry point in the group "
                                           "`sanic_gateway.protocols`.",
    "server.protocols.<name>.enabled": "`false`: declared but not started.",
    # -- limits ------------------------------------------------------------------------------
    "limits": "Bounds on what plugins and clients may hold: time, memory, threads, logins.",
    "limits.pipe_timeout": "A pipe that runs longer is cancelled, and the client gets 504 "
                           "`plugin.runtime.pipe_timeout`. `0` disables the timeout.",
    "limits.pipe_warn_time": "Pipes slower than this are logged as a warning.",
    "limits.max_concurrent_pipes": "Pipe chains running at once. Further requests with pipes "
                                   "wait in a buffer; requests without pipes never wait.",
    "limits.pipes_buffer_size": "Size of that buffer. When it is full: 503 "
                                "`plugin.runtime.too_many_pipes`.",
    "limits.hooks_buffer_size": "Hook calls waiting or running at once. Each holds its "
                                "payload until it has run (for request events, the whole "
                                "Request with its result), so this bounds that memory. Beyond, "
                                "new hook calls are dropped (the requests are still served), "
                                "counted and logged as one WARNING per 10 seconds at most.",
    "limits.plugin_threads": "Threads for plugins' plain `def` hooks, pipes and actions (no "
                             "other work uses them). When all are busy, a plain pipe or "
                             "action gets 503 `plugin.runtime.too_many_threads` at once, and "
                             "a plain hook waits for a free thread.",
    "limits.hook_workers_buffer_size": "For plugins with `threads: N`: events each hook worker "
                                       "process may hold unacknowledged. When every worker of "
                                       "the plugin is full, new events are dropped, counted "
                                       "and logged ([Hooks in worker processes]"
                                       "(../plugins/hook-workers.md)).",
    "limits.hook_workers_timeout": "A hook worker process silent that long (a hook stuck on "
                                   "one event; an idle worker signals every second) is killed "
                                   "and restarted; its unacknowledged events go to a live "
                                   "worker.",
    "limits.login_attempts_per_second": "Login attempts allowed per second and per "
                                        "connection, as in Kuzzle; beyond, 429 "
                                        "`api.process.too_many_logins_requests` with "
                                        "`Retry-After: 1`. `0`: unlimited. OAuth callbacks do "
                                        "not count.",
    "limits.login_failures_per_username": "Brute-force defence, per target username whatever "
                                          "the connection: after this many attempts without "
                                          "success, each new attempt locks the username for "
                                          "`login_failure_delay`, doubling up to "
                                          "`login_failure_max_delay` ([The local strategy]"
                                          "(../security/local.md)). `0`: off.",
    "limits.login_failure_delay": "The first lock.",
    "limits.login_failure_max_delay": "The longest lock.",
    "limits.request_timeout": "A request still running after this time, counted from its "
                              "first byte, is answered 503. Not `server.request_timeout`, "
                              "which bounds how long the client may take to send it.",
    # -- storage, cluster --------------------------------------------------------------------
    "storage": "Where users, profiles, roles, credentials, revoked tokens, OAuth states and "
               "plugin repositories live ([Storage](../storage.md)): "
               "`sqlite:///relative/path` (relative to gateway.yaml's folder), "
               "`sqlite:////absolute/path`, `sqlite:///:memory:`, or "
               "`postgresql://user@host:port/db`. `?schema=NAME` keeps several gateways apart "
               "in one database.",
    "cluster": "Several workers or nodes sharing realtime, revocations and limits through "
               "Redis (storage must be PostgreSQL).",
    "cluster.redis": "`redis://...` or `rediss://...`; empty means none.",
    "cluster.prefix": "Start of every Redis key and channel the cluster uses: give each cluster "
                      "its own when several share one Redis.",
    "cluster.heartbeat": "How often each member tells the others it is alive.",
    "cluster.node_timeout": "A member silent that long is dropped with its subscriptions "
                            "(at least twice the heartbeat).",
    # -- auth --------------------------------------------------------------------------------
    "auth": "Tokens and the ways to log in.",
    "auth.jwt": "The JSON Web Tokens the gateway issues ([Tokens](../security/tokens.md)).",
    "auth.jwt.secret": "The key signing tokens: at least 32 characters. Empty: one is "
                       "generated on first start and kept in storage, so tokens survive "
                       "restarts and every worker shares it.",
    "auth.jwt.algorithm": "The only algorithm tokens are accepted with.",
    "auth.jwt.expires_in": "Lifetime of a token when the login names none.",
    "auth.jwt.max_ttl": "The longest lifetime a login may ask for (`expiresIn`); `-1`: "
                        "unlimited.",
    "auth.strategies": "The login strategies. Listing `auth.strategies` replaces the default "
                       "`{local: {}}`: leave `local` out to turn password logins off. "
                       "Strategies written as code are declared under their plugin "
                       "(`plugins.<name>.strategies`).",
    "auth.strategies.local": "The built-in username/password strategy ([The local strategy]"
                             "(../security/local.md)); it takes no option.",
    "auth.strategies.<name>": "An OAuth2 / OpenID Connect provider, logged in at "
                              "`/_login/<name>` ([OAuth](../security/oauth.md)).",
    "auth.strategies.<name>.oauth2": "The provider's settings.",
    "auth.strategies.<name>.oauth2.server_metadata_url": "OpenID discovery document: gives "
                                                         "every endpoint, the issuer and the "
                                                         "JWKS.",
    "auth.strategies.<name>.oauth2.authorize_url": "Explicit endpoint, for providers without "
                                                   "discovery (then `authorize_url`, "
                                                   "`access_token_url` and one of "
                                                   "`userinfo_url` / `jwks_uri` are required).",
    "auth.strategies.<name>.oauth2.access_token_url": "Explicit token endpoint.",
    "auth.strategies.<name>.oauth2.userinfo_url": "Explicit userinfo endpoint; without "
                                                  "`jwks_uri`, the code flow reads it.",
    "auth.strategies.<name>.oauth2.jwks_uri": "Explicit key set validating ID tokens; "
                                              "requires `issuer`.",
    "auth.strategies.<name>.oauth2.issuer": "The `iss` ID tokens must carry.",
    "auth.strategies.<name>.oauth2.redirect_uri": "The callback registered at the provider. "
                                                  "Default: `<scheme>://<Host header>/_login/"
                                                  "<name>`; set it behind a proxy.",
    "auth.strategies.<name>.oauth2.client_id": "The client registered at the provider "
                                               "(required).",
    "auth.strategies.<name>.oauth2.client_secret": "Its secret (never logged, never shown by "
                                                   "`server:getConfig`).",
    "auth.strategies.<name>.oauth2.scope": "With `openid`, the ID token is validated; "
                                           "without, userinfo is read.",
    "auth.strategies.<name>.oauth2.kuid_claim": "The claim naming the provider's user.",
    "auth.strategies.<name>.oauth2.profiles": "Profiles of users created on first login: "
                                              "declared or built-in ones.",
    "auth.strategies.<name>.oauth2.success_redirect": "After the callback, 302 there with "
                                                      "`#jwt=…&expiresAt=…&_id=…` in the "
                                                      "fragment, instead of a JSON answer.",
    "auth.strategies.<name>.oauth2.timeout": "Time allowed to each call to the provider.",
    # -- security ----------------------------------------------------------------------------
    "security": "Roles, profiles and users created or replaced at every start "
                "([Security](../security/index.md)). Declaring the role `anonymous` closes "
                "the gateway.",
    "security.roles": "Roles by id.",
    "security.roles.<id>": "`{controllers: {<controller>: {actions: {<action>: true}}}}`, as "
                           "Kuzzle's roles.",
    "security.profiles": "Profiles by id.",
    "security.profiles.<id>": "`{policies: [{roleId, restrictedTo?}], rateLimit?}`.",
    "security.users": "Users by kuid.",
    "security.users.<id>": "`{profileIds, content, credentials}`; `profileIds` defaults to "
                           "`[default]`.",
    # -- vault -------------------------------------------------------------------------------
    "vault": "Kuzzle's vault: an encrypted secrets file decrypted at start and given to "
             "plugins as `context.secrets` ([Secrets](../plugins/secrets.md)). Without a "
             "file and without a key, `context.secrets` is `{}`.",
    "vault.file": "The encrypted secrets file, relative to gateway.yaml (`.json`, or `.yaml`/"
                  "`.yml`). Unset: `$KUZZLE_SECRETS_FILE`, else `secrets.enc.json` beside "
                  "gateway.yaml if it exists. A file named here or in `KUZZLE_SECRETS_FILE` "
                  "must exist.",
    "vault.key_env": "The environment variable holding the vault key (the key itself never "
                     "goes in gateway.yaml). A file without its key, or a key without a file, "
                     "stops `check` and `run`.",
    # -- plugins -----------------------------------------------------------------------------
    "plugins": "Plugins by name (letters, digits, `_` and `-`), loaded in the file's order "
               "([Writing plugins](../plugins/index.md)).",
    "plugins.<name>": "One plugin: exactly one of `module`, `path` or `entry_point`.",
    "plugins.<name>.module": "`package.module:Class` (the class is instantiated) or "
                             "`package.module` (the module is the plugin), imported with the "
                             "folder of gateway.yaml first on the import path.",
    "plugins.<name>.path": "A folder, relative to gateway.yaml, holding `manifest.json` and "
                           "`__init__.py`.",
    "plugins.<name>.entry_point": "An installed entry point in the group `sanic_gateway`.",
    "plugins.<name>.config": "Passed to `init(config, context)`; its content is free.",
    "plugins.<name>.threads": "> 0: the plugin's hooks run in that many worker processes "
                              "([Hooks in worker processes](../plugins/hook-workers.md)).",
    "plugins.<name>.hooks": "Event → function(s) called with `(payload, event)`, never awaited "
                            "by the request ([Events](events.md)).",
    "plugins.<name>.hooks.<event>": "A function name, or a list of them, run in that order.",
    "plugins.<name>.pipes": "Event → function(s) called with `(payload, event)` and awaited "
                            "in a chain ([Events](events.md)).",
    "plugins.<name>.pipes.<event>": "A function name, or a list of them, run in that order.",
    "plugins.<name>.controllers": "Controllers, served as `<plugin>/<controller>`.",
    "plugins.<name>.controllers.<controller>": "Its actions: action name → function name.",
    "plugins.<name>.controllers.<controller>.<action>": "The function called with the Request; "
                                                        "what it returns is the `result`.",
    "plugins.<name>.routes": "HTTP routes, each served at `/_plugin/<plugin><url>` and "
                             "`/_/<plugin><url>` ([HTTP](../protocols/http.md#plugin-routes)).",
    "plugins.<name>.routes[].verb": "HTTP verb, any case; a `get` route also answers `HEAD`.",
    "plugins.<name>.routes[].url": "Starts with `/`; `:name` segments become `args.name`.",
    "plugins.<name>.routes[].controller": "A controller declared in the same plugin.",
    "plugins.<name>.routes[].action": "An action of that controller.",
    "plugins.<name>.strategies": "Authentication strategies written as code, by name "
                                 "([Authentication strategies](../plugins/strategies.md)).",
    "plugins.<name>.strategies.<name>": "One strategy, logged in at `/_login/<name>`.",
    "plugins.<name>.strategies.<name>.fields": "The login fields passed to `verify` (all of "
                                               "them when empty).",
    "plugins.<name>.strategies.<name>.config": "Free options of the strategy.",
    "plugins.<name>.strategies.<name>.methods": "Kuzzle's strategy methods → the plugin's "
                                                "functions.",
    "plugins.<name>.strategies.<name>.methods.exists": "`exists(request, kuid)`: has this "
                                                       "user credentials here?",
    "plugins.<name>.strategies.<name>.methods.create": "`create(request, credentials, kuid)`: "
                                                       "store them; returns non-sensitive "
                                                       "info.",
    "plugins.<name>.strategies.<name>.methods.update": "`update(request, credentials, kuid)`.",
    "plugins.<name>.strategies.<name>.methods.delete": "`delete(request, kuid)`.",
    "plugins.<name>.strategies.<name>.methods.validate": "`validate(request, credentials, "
                                                         "kuid, is_update)`: `True` or raise.",
    "plugins.<name>.strategies.<name>.methods.verify": "`verify(request, **credentials)`: the "
                                                       "kuid, or `{\"message\": why}`.",
    "plugins.<name>.strategies.<name>.methods.getInfo": "`getInfo(request, kuid)`: "
                                                        "non-sensitive info.",
    "plugins.<name>.strategies.<name>.methods.getById": "`getById(request, id)`: "
                                                        "non-sensitive info.",
    "plugins.<name>.strategies.<name>.methods.afterRegister": "`afterRegister(strategy)`, "
                                                              "called once registered.",
}

# What a user's own key stands for, by the schema's rule that introduces it.
PLACEHOLDERS = {"plugins": "<name>", "roles": "<id>", "profiles": "<id>", "users": "<id>",
                "hooks": "<event>", "pipes": "<event>", "controllers": "<controller>",
                "strategies": "<name>", "protocols": "<name>", "<controller>": "<action>"}


@dataclass(frozen=True)
class Key:
    """One row of the reference: a key path and its rules."""

    path: str
    rules: dict[str, Any]


def walk(schema: dict[str, Any], prefix: str = "") -> Iterator[Key]:
    """Every key of the schema, at every level, parents before children."""
    for name, rules in schema.items():
        path = f"{prefix}{name}"
        yield Key(path, rules)
        yield from _children(path, name, rules)


def _children(path: str, name: str, rules: dict[str, Any]) -> Iterator[Key]:
    if rules.get("type") == "dict" and "schema" in rules:
        yield from walk(rules["schema"], path + ".")
    if rules.get("type") == "list" and rules.get("schema", {}).get("type") == "dict":
        yield from walk(rules["schema"]["schema"], path + "[].")
    for child in (rules.get("allow_unknown"), rules.get("valuesrules")):
        if isinstance(child, dict):
            placeholder = PLACEHOLDERS.get(name, "<name>")
            yield Key(f"{path}.{placeholder}", child)
            yield from _children(f"{path}.{placeholder}", placeholder, child)


def _seconds(value: float) -> str:
    if value == -1:
        return "-1"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    if value == 0:
        return "0s"
    return f"{round(value * 1000)}ms" if value < 1 else f"{value:g}s"


def _bytes(value: int) -> str:
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}B"


def type_of(rules: dict[str, Any]) -> str:
    """The type as a user writes it: units and bounds included."""
    coerce = rules.get("coerce")
    kind = rules.get("type")
    if coerce == "duration":
        text = "duration"
    elif coerce == "duration_or_unlimited":
        text = "duration or `-1`"
    elif coerce == "size":
        text = "size"
    elif coerce == "listify":
        text = "function name or list of function names"
    elif rules.get("meta", {}).get("expects") == "a function name":
        text = "function name"
    elif rules.get("check_with") in ("http_url", "storage_url", "redis_url"):
        text = "URL"
    elif kind == "dict":
        text = "mapping"
    elif kind == "list":
        item = rules.get("schema", {}).get("type")
        text = {"dict": "list of mappings", "string": "list of strings"}.get(item, "list")
    else:
        text = {"float": "number"}.get(kind, kind or "any")
    low, high = rules.get("min"), rules.get("max")
    if low is not None and high is not None:
        text += f" {_bound(rules, low)} to {_bound(rules, high)}"
    elif low is not None:
        text += f" ≥ {_bound(rules, low)}"
    if rules.get("minlength"):
        text += f", at least {rules['minlength']}"
    if rules.get("nullable"):
        text += " or null"
    return text


def _bound(rules: dict[str, Any], value: Any) -> str:
    if rules.get("coerce") in ("duration", "duration_or_unlimited"):
        return _seconds(value)
    return str(value)


def default_of(rules: dict[str, Any]) -> str:
    """The default as it would be written in gateway.yaml."""
    if rules.get("required"):
        return "required"
    if "default" not in rules:
        return "—"
    value = rules["default"]
    if value is None:
        return "`null`"
    if rules.get("coerce") in ("duration", "duration_or_unlimited"):
        return f"`{_seconds(value)}`"
    if rules.get("coerce") == "size":
        return f"`{_bytes(value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value == "" else f"`{value}`"
    if isinstance(value, list):
        return "`[" + ", ".join(map(str, value)) + "]`"
    if isinstance(value, dict):
        inner = ", ".join(f"{k}: {{}}" for k in value)
        return "`{" + inner + "}`"
    return f"`{value}`"


def allowed_of(rules: dict[str, Any]) -> str:
    allowed = rules.get("allowed")
    return ", ".join(f"`{value}`" for value in allowed) if allowed else ""


def missing_descriptions() -> list[str]:
    return [key.path for key in walk(SCHEMA) if key.path not in DESCRIPTIONS]


def stale_descriptions() -> list[str]:
    paths = {key.path for key in walk(SCHEMA)}
    return [path for path in DESCRIPTIONS if path not in paths]


def render() -> str:
    """The generated part of the page: one table per top-level section."""
    missing, stale = missing_descriptions(), stale_descriptions()
    if missing or stale:
        raise ValueError(f"gateway.yaml reference: keys without a description: {missing}; "
                         f"descriptions of keys the schema does not have: {stale}")
    out = [BEGIN, ""]
    for section in SCHEMA:
        out += [f"## {section}", "", "| key | type | default | meaning |",
                "| --- | --- | --- | --- |"]
        for key in walk({section: SCHEMA[section]}):
            allowed = allowed_of(key.rules)
            kind = f"{type_of(key.rules)}, one of {allowed}" if allowed else type_of(key.rules)
            cells = (f"`{key.path}`", kind, default_of(key.rules), DESCRIPTIONS[key.path])
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        out.append("")
    out.append(END)
    return "\n".join(out)


def generated_part(text: str) -> str:
    match = re.search(re.escape(BEGIN) + ".*?" + re.escape(END), text, re.S)
    if match is None:
        raise ValueError(f"{PAGE}: no generated part ({BEGIN} ... {END})")
    return match.group(0)


def up_to_date(text: str) -> bool:
    return generated_part(text) == render()


def main(argv: list[str]) -> int:
    text = PAGE.read_text()
    if "--check" in argv:
        if up_to_date(text):
            return 0
        print(f"{PAGE} is out of date: run python tools/config_reference.py", file=sys.stderr)
        return 1
    PAGE.write_text(text.replace(generated_part(text), render()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
