"""gateway.yaml as its author experiences it: what loads, and exactly what each mistake prints."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sanic_gateway.config import (
    Config,
    ConfigError,
    ConfigIssue,
    load_config,
    parse_duration,
    parse_size,
)

PLUGIN = """\
plugins:
  audit:
    module: handlers.audit:AuditPlugin
"""


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), env=env or {})


def errors(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    """Every printed issue line, with the tmp directory left out of the file name."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    return [str(issue).replace(f"{tmp_path}/", "") for issue in caught.value.issues]


# --- defaults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "server:\n"])
def test_an_empty_file_is_all_defaults(tmp_path: Path, text: str) -> None:
    cfg = load(tmp_path, text)

    assert cfg.data == {
        "server": {
            "host": "127.0.0.1",
            "port": 7512,
            "workers": 1,
            "max_request_size": 1048576,
            "request_timeout": 30.0,
            "keep_alive_timeout": 15.0,
            "drain_timeout": 30.0,
            "max_connections": 10000,
            "metrics": True,
            "access_log": False,
            "log_format": "text",
            "protocols": {
                "http": {"enabled": True},
                "websocket": {"enabled": True, "idle_timeout": 60.0, "send_queue": 50,
                              "max_in_flight": 100},
                "mqtt": {"enabled": False, "port": 1883, "allow_pubsub": False,
                         "send_queue": 1000, "max_in_flight": 100},
            },
        },
        "limits": {
            "pipe_timeout": 5.0,
            "pipe_warn_time": 0.5,
            "max_concurrent_pipes": 50,
            "pipes_buffer_size": 50000,
            "hooks_buffer_size": 5000,
            "plugin_threads": 16,
            "hook_workers_buffer_size": 1000,
            "hook_workers_timeout": 60.0,
            "login_attempts_per_second": 1,
            "login_failures_per_username": 5,
            "login_failure_delay": 1.0,
            "login_failure_max_delay": 60.0,
            "request_timeout": 60.0,
        },
        "storage": "sqlite:///./data/gateway.db",
        "cluster": {"redis": None, "prefix": "sanic-gateway", "heartbeat": 1.0,
                    "node_timeout": 3.0},
        "auth": {
            "jwt": {"secret": "", "algorithm": "HS256", "expires_in": 3600.0, "max_ttl": -1.0},
            "strategies": {"local": {}},
        },
        "security": {"roles": {}, "profiles": {}, "users": {}},
        "vault": {"file": None, "key_env": "KUZZLE_VAULT_KEY"},
        "plugins": {},
    }
    assert cfg.path == tmp_path / "gateway.yaml"
    assert cfg.base_dir == tmp_path


def test_a_plugin_gets_its_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, PLUGIN)

    assert cfg.data["plugins"]["audit"] == {
        "module": "handlers.audit:AuditPlugin",
        "config": {},
        "threads": 0,
        "hooks": {},
        "pipes": {},
        "controllers": {},
        "routes": [],
        "strategies": {},
    }


def test_the_spec_example_loads(tmp_path: Path) -> None:
    cfg = load(tmp_path, """\
        server:
          max_request_size: 1MB
          protocols:
            http:      {enabled: true}
            websocket: {enabled: true, idle_timeout: 60s}
            my-proto:  {path: protocols/my_proto, color: blue}
        auth:
          jwt: {secret: ${GATEWAY_JWT_SECRET:-}, expires_in: 1h, max_ttl: -1}
          strategies:
            local: {}
            github:
              oauth2: {server_metadata_url: https://x/.well-known, client_id: ${GITHUB_CLIENT_ID}}
        plugins:
          audit:
            module: handlers.audit:AuditPlugin
            config: {level: info}
            hooks:
              "document:afterCreate": log_creation
              "request:onSuccess": [count, trace]
            pipes:
              "document:before*": add_created_at
            controllers:
              newController: {myAction: my_action, myOtherAction: other_action}
            routes:
              - {verb: GET, url: /foo/:name, controller: newController, action: myAction}
              - {verb: post, url: /bar, controller: newController, action: myOtherAction}
            strategies:
              ldap:
                fields: [login, password]
                methods: {exists: exists, create: create, update: update, delete: delete,
                          validate: validate, verify: verify, getInfo: get_info}
        """, env={"GITHUB_CLIENT_ID": "abc"})

    assert cfg.data["server"]["protocols"]["my-proto"] == {
        "path": "protocols/my_proto", "enabled": True, "color": "blue"}
    assert cfg.data["auth"]["jwt"]["secret"] == ""
    assert cfg.data["auth"]["jwt"]["expires_in"] == 3600.0
    oauth2 = cfg.data["auth"]["strategies"]["github"]["oauth2"]
    assert (oauth2["client_id"], oauth2["scope"], oauth2["kuid_claim"], oauth2["profiles"],
            oauth2["timeout"]) == ("abc", "openid email profile", "sub", ["default"], 10.0)
    audit = cfg.data["plugins"]["audit"]
    assert audit["hooks"] == {"document:afterCreate": ["log_creation"],
                              "request:onSuccess": ["count", "trace"]}
    assert audit["routes"][0] == {"verb": "get", "url": "/foo/:name",
                                  "controller": "newController", "action": "myAction"}
    assert audit["strategies"]["ldap"]["config"] == {}


def test_plugin_order_is_the_file_order(tmp_path: Path) -> None:
    cfg = load(tmp_path, """\
        plugins:
          zeta: {module: z}
          alpha: {module: a}
          mid: {entry_point: m}
        """)

    assert list(cfg.data["plugins"]) == ["zeta", "alpha", "mid"]


# --- environment ------------------------------------------------------------------------------


def test_env_values_are_typed_after_substitution(tmp_path: Path) -> None:
    cfg = load(tmp_path, """\
        server:
          port: ${PORT:-7512}
          workers: ${WORKERS}
          protocols:
            mqtt: {enabled: ${MQTT:-true}}
        storage: postgresql://${DB_USER}@${DB_HOST:-localhost}/gw
        """, env={"WORKERS": "4", "DB_USER": "bob"})

    assert cfg.data["server"]["port"] == 7512
    assert cfg.data["server"]["workers"] == 4
    assert cfg.data["server"]["protocols"]["mqtt"]["enabled"] is True
    assert cfg.data["storage"] == "postgresql://bob@localhost/gw"


def test_env_escape_and_keys_are_left_alone(tmp_path: Path) -> None:
    cfg = load(tmp_path, """\
        plugins:
          audit:
            module: handlers.audit
            config:
              template: "$${NAME} is ${NAME}"
              ${NAME}: key
        """, env={"NAME": "alice"})

    assert cfg.data["plugins"]["audit"]["config"] == {
        "template": "${NAME} is alice", "${NAME}": "key"}


def test_os_environ_is_the_default_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANIC_GATEWAY_TEST_PORT", "9000")
    path = write(tmp_path, "server: {port: ${SANIC_GATEWAY_TEST_PORT}}\n")

    assert load_config(path).data["server"]["port"] == 9000


def test_an_unset_variable_names_itself(tmp_path: Path) -> None:
    assert errors(tmp_path, """\
        auth:
          strategies:
            github:
              oauth2:
                client_id: ${GITHUB_CLIENT_ID}
                server_metadata_url: https://issuer.example/.well-known/openid-configuration
        """) == [
        "gateway.yaml:5: auth.strategies.github.oauth2.client_id: environment variable "
        "GITHUB_CLIENT_ID is not set; set it or write ${GITHUB_CLIENT_ID:-default}"
    ]


def test_an_unset_variable_is_reported_once_not_as_a_type_error(tmp_path: Path) -> None:
    assert errors(tmp_path, "server:\n  port: ${PORT}\n") == [
        "gateway.yaml:2: server.port: environment variable PORT is not set; "
        "set it or write ${PORT:-default}"
    ]


# --- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    (5, 5.0), (0.25, 0.25), ("5s", 5.0), ("500ms", 0.5), ("1.5s", 1.5), ("2m", 120.0),
    ("1h", 3600.0), ("1d", 86400.0), ("1h30m", 5400.0), ("10", 10.0),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 parsecs", "", "s", True, None, -1, "-5s", [1]])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .* \(use e\.g\. 500ms, 5s, 1h\)"):
        parse_duration(text)


def test_minus_one_means_unlimited_only_where_allowed() -> None:
    assert parse_duration(-1, allow_unlimited=True) == -1.0
    assert parse_duration("-1", allow_unlimited=True) == -1.0


@pytest.mark.parametrize(("text", "size"), [
    (2048, 2048), ("100B", 100), ("512KB", 524288), ("10kb", 10240), ("1MB", 1048576),
    ("1GB", 1073741824), ("1.5MB", 1572864), ("1M", 1048576), ("2KiB", 2048),
])
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1 parsec", "MB", "-1MB", False, "1XB"])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError, match=r"invalid size"):
        parse_size(text)


def test_units_in_the_file(tmp_path: Path) -> None:
    cfg = load(tmp_path, """\
        server: {max_request_size: 512KB}
        limits: {pipe_timeout: 2s, pipe_warn_time: 100ms, request_timeout: 1m}
        auth: {jwt: {expires_in: 1d, max_ttl: 7d}}
        """)

    assert cfg.data["server"]["max_request_size"] == 524288
    assert cfg.data["limits"]["pipe_timeout"] == 2.0
    assert cfg.data["limits"]["pipe_warn_time"] == 0.1
    assert cfg.data["limits"]["request_timeout"] == 60.0
    assert cfg.data["auth"]["jwt"]["expires_in"] == 86400.0
    assert cfg.data["auth"]["jwt"]["max_ttl"] == 7 * 86400.0


def test_bad_units_in_the_file(tmp_path: Path) -> None:
    assert errors(tmp_path, """\
        server:
          max_request_size: 1 parsec
        limits:
          pipe_timeout: 5 parsecs
        """) == [
        "gateway.yaml:2: server.max_request_size: invalid size '1 parsec' "
        "(use e.g. 512KB, 1MB, 1GB)",
        "gateway.yaml:4: limits.pipe_timeout: invalid duration '5 parsecs' "
        "(use e.g. 500ms, 5s, 1h)",
    ]


# --- shape errors -----------------------------------------------------------------------------


def test_unknown_keys_at_several_depths(tmp_path: Path) -> None:
    assert errors(tmp_path, """\
        server:
          prot: 80
          protocols:
            websocket: {enabled: true, idle_timeot: 5s}
        limts: {}
        plugins:
          audit:
            modul: handlers.audit
            module: handlers.audit
            routes:
              - {verb: get, url: /x, controller: c, action: a, contrller: c}
            controllers:
              c: {a: f}
        """) == [
        "gateway.yaml:2: server.prot: unknown key 'prot' (did you mean 'port'?)",
        "gateway.yaml:4: server.protocols.websocket.idle_timeot: unknown key 'idle_timeot' "
        "(did you mean 'idle_timeout'?)",
        "gateway.yaml:5: limts: unknown key 'limts' (did you mean 'limits'?)",
        "gateway.yaml:8: plugins.audit.modul: unknown key 'modul' (did you mean 'module'?)",
        "gateway.yaml:11: plugins.audit.routes[0].contrller: unknown key 'contrller' "
        "(did you mean 'controller'?)",
    ]


def test_an_issue_has_its_parts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "server:\n  prot: 80\n")

    (issue,) = caught.value.issues
    assert issue == ConfigIssue(str(tmp_path / "gateway.yaml"), 2, ("server", "prot"),
                                "unknown key 'prot'", "port")
    assert str(caught.value) == f"{tmp_path}/gateway.yaml:2: server.prot: unknown key 'prot' " \
                                "(did you mean 'port'?)"


def test_relative_paths_print_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "limits: {pipe_timeout: soon}\n")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ConfigError) as caught:
        load_config("gateway.yaml", env={})

    assert str(caught.value) == ("gateway.yaml:1: limits.pipe_timeout: invalid duration 'soon' "
                                 "(use e.g. 500ms, 5s, 1h)")


def test_unknown_key_without_close_match_lists_the_allowed_ones(tmp_path: Path) -> None:
    assert errors(tmp_path, "cluster: {zookeeper: x}\n") == [
        "gateway.yaml:1: cluster.zookeeper: unknown key 'zookeeper' (allowed here: redis, "
        "prefix, heartbeat, node_timeout)"]


def test_wrong_types_and_values(tmp_path: Path) -> None:
    assert errors(tmp_path, """\
        server:
          port: 70000
          workers: abc
          host: [a]
        auth:
          jwt: {algorithm: HS257}
        plugins:
          audit:
            module: m
            hooks: {"a:b": 3}
            routes:
              - {verb: fetch, url: /x, controller: c, action: a}
            controllers: {c: {a: f}}
        storage: mysql://db
        cluster: {redis: localhost:6379}
        """) == [
        "gateway.yaml:2: server.port: must be at most 65535, got 70000",
        "gateway.yaml:3: server.workers: expected an integer, got 'abc'",
        "gateway.yaml:4: server.host: expected a string, got a list",
        "gateway.yaml:6: auth.jwt.algorithm: must be one of HS256, HS384, HS512, got 'HS257' "
        "(did you mean 'HS256'?)",
        "gateway.yaml:10: plugins.audit.hooks.a:b: expected a function name or a list of "
        "function names, got 3",
        "gateway.yaml:12: plugins.audit.routes[0].verb: must be one of get, post, put, patch, "
        "delete, head, got 'fetch' (did you mean 'patch'?)",
        "gateway.yaml:14: storage: unsupported storage URL 'mysql://db' "
        "(use sqlite:///path/to/db or postgresql://user@host/db)",
        "gateway.yaml:15: cluster.redis: unsupported Redis URL 'localhost:6379' "
        "(use redis://host:6379/0 or rediss://...)",
    ]


def test_missing_required_keys_are_named(tmp_path: Path) -> None:
    assert errors(tmp_path, PLUGIN + """\
    strategies:
      ldap:
        methods: {exists: exists, create: create, update: update, delete: delete}
      ad:
        methods: {exists: exists, create: create, update: update, delete: delete, validate: v}
    routes:
      - {url: /x, action: a}
""") == [
        "gateway.yaml:6: plugins.audit.strategies.ldap.methods: missing required keys "
        "'validate' and 'verify'",
        "gateway.yaml:8: plugins.audit.strategies.ad.methods: missing required key 'verify'",
        "gateway.yaml:10: plugins.audit.routes[0]: missing required keys 'verb' and 'controller'",
    ]


def test_yaml_booleans_as_names_get_a_hint(tmp_path: Path) -> None:
    assert errors(tmp_path, PLUGIN + """\
    hooks:
      on: f
""") == [
        "gateway.yaml:5: plugins.audit.hooks.True: invalid event name True: "
        "YAML did not read it as text; write it in quotes"]


def test_the_local_strategy_takes_no_options_yet(tmp_path: Path) -> None:
    assert errors(tmp_path, "auth: {strategies: {local: {salt: x}}}\n") == [
        "gateway.yaml:1: auth.strategies.local.salt: unknown key 'salt'"]


def test_a_top_level_list_is_refused(tmp_path: Path) -> None:
    assert errors(tmp_path, "- server\n") == [
        "gateway.yaml: expected a mapping of sections (server, limits, storage, cluster, auth, "
        "security, vault, plugins), got a list"]


# --- YAML-level errors ------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")

    assert str(caught.value) == f"{tmp_path}/nope.yaml: file not found"


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    assert errors(tmp_path, """\
        server:
          port: 7512
          host: [127.0.0.1
        limits: {}
        """) == [
        "gateway.yaml:4: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 3)"]


def test_control_characters_are_refused(tmp_path: Path) -> None:
    assert errors(tmp_path, "server:\n  host: a\x01b\n") == [
        "gateway.yaml:2: invalid YAML: character '\\x01' is not allowed in a YAML file"]


def test_unsafe_tags_are_refused(tmp_path: Path) -> None:
    (line,) = errors(tmp_path, "server: !!python/object/apply:os.system [ls]\n")

    assert line.startswith("gateway.yaml:1: invalid YAML: could not determine a constructor")


def test_duplicate_plugin_name(tmp_path: Path) -> None:
    assert errors(tmp_path, """\
        plugins:
          audit:
            module: handlers.audit
          other: {module: handlers.other}
          audit:
            module: handlers.audit2
        """) == [
        "gateway.yaml:5: plugins.audit: duplicate key 'audit' (first at line 2); "
        "YAML would silently keep only the last one"]


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    cfg = load(tmp_path, """\
        plugins:
          a: &base {module: m, threads: 2}
          b:
            <<: *base
            threads: 3
        """)

    assert cfg.data["plugins"]["b"]["threads"] == 3
    assert cfg.line_of(("plugins", "b", "threads")) == 5


# --- plugin semantics -------------------------------------------------------------------------


def test_plugin_needs_exactly_one_source(tmp_path: Path) -> None:
    assert errors(tmp_path, """\
        plugins:
          none: {config: {}}
          both: {module: handlers.x, path: plugins/x}
          bad-ref: {module: handlers/x.py}
          "bad name": {module: m}
        """) == [
        "gateway.yaml:2: plugins.none: missing 'module', 'path' or 'entry_point'",
        "gateway.yaml:3: plugins.both: give only one of 'module', 'path' or 'entry_point' "
        "(found 'module' and 'path')",
        "gateway.yaml:4: plugins.bad-ref.module: invalid module reference 'handlers/x.py' "
        "(use package.module or package.module:Class)",
        "gateway.yaml:5: plugins.bad name: invalid plugin name 'bad name' "
        "(use letters, digits, '_' and '-')",
    ]


def test_routes_point_at_declared_controllers_and_actions(tmp_path: Path) -> None:
    assert errors(tmp_path, PLUGIN + """\
    controllers:
      newController: {myAction: my_action}
    routes:
      - {verb: get, url: /a, controller: newControler, action: myAction}
      - {verb: get, url: /b, controller: newController, action: myActon}
      - {verb: get, url: /c, controller: other, action: x}
      - {verb: post, url: /b/:id, controller: newController, action: myAction}
      - {verb: post, url: /b/:name, controller: newController, action: myAction}
      - {verb: get, url: nope, controller: newController, action: myAction}
""") == [
        "gateway.yaml:7: plugins.audit.routes[0].controller: controller 'newControler' is not "
        "declared in this plugin's controllers (did you mean 'newController'?)",
        "gateway.yaml:8: plugins.audit.routes[1].action: action 'myActon' is not declared in "
        "controller 'newController' (did you mean 'myAction'?)",
        "gateway.yaml:9: plugins.audit.routes[2].controller: controller 'other' is not declared "
        "in this plugin's controllers (declared: newController)",
        "gateway.yaml:11: plugins.audit.routes[4]: duplicate route POST /b/:name "
        "(same as routes[3])",
        "gateway.yaml:12: plugins.audit.routes[5].url: url must start with '/', got 'nope'",
    ]


def test_event_function_and_action_names(tmp_path: Path) -> None:
    assert errors(tmp_path, PLUGIN + """\
    hooks:
      beforeCreate: f
      "document:*": [ok, 2bad]
      "core:realtime:user:subscribe:after": fine
      "audit/stats:before*": fine
      "doc*:x": f
    pipes:
      "document:beforeCreate": class
    controllers:
      "my ctrl": {"1action": f}
""") == [
        "gateway.yaml:5: plugins.audit.hooks.beforeCreate: invalid event name 'beforeCreate' "
        "(expected 'controller:event' such as 'document:beforeCreate'; '*' only at the end)",
        "gateway.yaml:6: plugins.audit.hooks.document:*[1]: invalid function name '2bad' "
        "(must be a Python identifier)",
        "gateway.yaml:9: plugins.audit.hooks.doc*:x: invalid event name 'doc*:x' "
        "(expected 'controller:event' such as 'document:beforeCreate'; '*' only at the end)",
        "gateway.yaml:11: plugins.audit.pipes.document:beforeCreate: invalid function name "
        "'class' (must be a Python identifier)",
        "gateway.yaml:13: plugins.audit.controllers.my ctrl: invalid controller name 'my ctrl' "
        "(use letters, digits, '_' and '-')",
        "gateway.yaml:13: plugins.audit.controllers.my ctrl.1action: invalid action name "
        "'1action' (use letters, digits and '_', not starting with a digit)",
    ]


def test_custom_protocol_needs_one_source(tmp_path: Path) -> None:
    assert errors(tmp_path, """\
        server:
          protocols:
            htp: {enabled: true}
            both: {module: a.b, path: c}
        """) == [
        "gateway.yaml:3: server.protocols.htp: unknown protocol 'htp': a custom protocol needs "
        "'module', 'path' or 'entry_point' (did you mean 'http'?)",
        "gateway.yaml:4: server.protocols.both: give only one of 'module', 'path' or 'entry_point' "
        "(found 'module' and 'path')",
    ]


def test_several_errors_are_reported_at_once_in_line_order(tmp_path: Path) -> None:
    lines = errors(tmp_path, """\
        server:
          port: nope
        limits:
          pipe_timeout: forever
        plugins:
          audit:
            hooks: {x: f}
        auth:
          jwt: {secret: ${SECRET}}
        """)

    assert [line.split(":")[1] for line in lines] == ["2", "4", "6", "7", "9"]


# --- Config API -------------------------------------------------------------------------------


def test_line_of_and_issue_for_later_stages(tmp_path: Path) -> None:
    cfg = load(tmp_path, PLUGIN + """\
    pipes:
      "document:beforeCreate": add_created
    routes:
      - {verb: get, url: /x, controller: c, action: a}
    controllers: {c: {a: f}}
""")

    where = ("plugins", "audit", "pipes", "document:beforeCreate")
    assert cfg.line_of(where) == 5
    assert cfg.line_of(("plugins", "audit", "routes", 0, "url")) == 7
    assert cfg.line_of(("plugins", "audit", "routes", 0, "nothing", "here")) == 7
    assert cfg.line_of(("nowhere",)) is None
    issue = cfg.issue(where, "no function 'add_created' in handlers.audit:Audit",
                      suggestion="add_created_at")
    assert str(issue) == (
        f"{tmp_path}/gateway.yaml:5: plugins.audit.pipes.document:beforeCreate: no function "
        "'add_created' in handlers.audit:Audit (did you mean 'add_created_at'?)")


def test_issue_without_a_line() -> None:
    issue = ConfigIssue("gateway.yaml", None, ("plugins", "a", "routes", 2), "broken")

    assert str(issue) == "gateway.yaml: plugins.a.routes[2]: broken"
    assert str(ConfigError([issue, issue])) == f"{issue}\n{issue}"


def test_from_dict_validates_without_lines() -> None:
    cfg = Config.from_dict({"plugins": {"a": {"module": "m", "hooks": {"x:y": "f"}}}})

    assert cfg.data["plugins"]["a"]["hooks"] == {"x:y": ["f"]}
    assert cfg.data["server"]["port"] == 7512
    assert cfg.path == Path("gateway.yaml").resolve()
    with pytest.raises(ConfigError) as caught:
        Config.from_dict({"server": {"prot": 1}, "limits": {"pipe_timeout": "x"}})
    assert sorted(str(caught.value).splitlines()) == [
        "gateway.yaml: limits.pipe_timeout: invalid duration 'x' (use e.g. 500ms, 5s, 1h)",
        "gateway.yaml: server.prot: unknown key 'prot' (did you mean 'port'?)",
    ]


def test_from_dict_does_not_touch_its_input() -> None:
    data = {"plugins": {"a": {"module": "m", "hooks": {"x:y": "f"}}}}

    Config.from_dict(data)

    assert data == {"plugins": {"a": {"module": "m", "hooks": {"x:y": "f"}}}}


def test_errors_are_in_line_order_those_without_a_line_last() -> None:
    issues = [ConfigIssue("g.yaml", None, ("a",), "first without"),
              ConfigIssue("g.yaml", 9, ("b",), "nine"),
              ConfigIssue("g.yaml", 2, ("c",), "two"),
              ConfigIssue("g.yaml", None, ("d",), "second without"),
              ConfigIssue("g.yaml", 2, ("e",), "two again")]
    assert [i.message for i in ConfigError(issues).issues] == [
        "two", "two again", "nine", "first without", "second without"]


def test_cluster_checks_all_report(tmp_path: Path) -> None:
    """SQLite with cluster mode does not hide a node_timeout below twice the heartbeat."""
    found = errors(tmp_path, """\
        storage: sqlite:///./data/gateway.db
        cluster:
          redis: redis://127.0.0.1:6379/0
          heartbeat: 2s
          node_timeout: 3s
    """)
    assert [line.split(": ")[1] for line in found] == ["storage", "cluster.node_timeout"]
