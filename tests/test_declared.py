"""gateway.yaml's `security:` section: `check` refuses what `run` would refuse at start, with
the same message at the same line, and a closed gateway keeps no open back door."""

from __future__ import annotations

import logging
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from sanic_gateway.config import ConfigError, load_config
from sanic_gateway.gateway import Gateway
from tests.security_helpers import (
    ANONYMOUS_ROLE,
    bearer,
    closed_yaml,
    denied,
    login,
)
from tests.test_cli import ROOT, SCRIPT, cli, free_port
from tests.test_events import REC

ON_PATH = {"PYTHONPATH": str(ROOT)}  # the recorder plugin is tests.plugins.recorder
BAD_SECURITY = """\
security:
  roles:
    anonymous: {controllers: {auth: {actions: {login: true}}}}
    writer:
      controllers: {auth: {actions: {"*": true}}}
  profiles:
    writers: {policies: [{roleId: writer}], rateLimit: fifty}
    bosses: {policies: [{roleId: admn}]}
  users:
    alice:
      profileIds: [writer]
      credentials:
        local: {username: alice, password: "${ALICE_PASSWORD}"}
"""

EXPECTED = [
    "gateway.yaml:7: security.profiles.writers.rateLimit: Invalid profile \"writers\": "
    "'rateLimit' must be an integer >= 0 (0: unlimited)",
    "gateway.yaml:8: security.profiles.bosses.policies[0].roleId: Role \"admn\" not found. "
    "(did you mean 'admin'?)",
    "gateway.yaml:11: security.users.alice.profileIds[0]: Profile \"writer\" not found. "
    "(did you mean 'writers'?)",
    "gateway.yaml:13: security.users.alice.credentials.local.password: Credentials rejected: "
    "'password' must be a non-empty string",
]


def issues(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "gateway.yaml", env=env or {})
    return [str(i).replace(f"{tmp_path}/", "") for i in caught.value.issues]


# -- check and run refuse the same file, with exit code 2 -----------------------------------------

def test_check_and_run_refuse_a_bad_security_section_alike(tmp_path):
    (tmp_path / "gateway.yaml").write_text(BAD_SECURITY)
    env = {"ALICE_PASSWORD": ""}  # set, but empty
    checked = cli("check", cwd=tmp_path, env=env)
    assert checked.returncode == 2, checked.stdout
    assert checked.stderr.splitlines() == [*EXPECTED, "4 error(s) in gateway.yaml"]
    ran = subprocess.run([SCRIPT, "run", "--port", str(free_port())], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, **env})
    assert ran.returncode == 2
    assert "serving on" not in ran.stdout + ran.stderr
    assert ran.stderr.splitlines() == checked.stderr.splitlines()
    assert not (tmp_path / "data").exists()  # nothing was opened


def test_a_declared_profile_naming_an_unknown_role(tmp_path):
    (tmp_path / "gateway.yaml").write_text(
        "security:\n  profiles:\n    readers: {policies: [{roleId: nope}]}\n")
    for command in ("check", "run"):
        done = subprocess.run([SCRIPT, command, *(("--port", str(free_port()))
                                                  if command == "run" else ())],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (command, done.stderr)
        assert ('gateway.yaml:3: security.profiles.readers.policies[0].roleId: Role "nope" '
                "not found. (a declared or built-in role: anonymous, default, admin)"
                in done.stderr)
        assert "Traceback" not in done.stderr and "serving on" not in done.stderr


# -- every entry, as the store would see it ------------------------------------------------------

def test_roles_as_the_store_checks_them(tmp_path):
    found = issues(tmp_path, """\
        security:
          roles:
            _hidden: {controllers: {auth: {actions: {login: true}}}}
            sloppy:
              controllers:
                auth:
                  actions: {login: yes please}
            bare: {}
            extra:
              controllers:
                auth: {actions: {login: true}, action: {}}
        """)
    assert found == [
        "gateway.yaml:3: security.roles._hidden: Invalid argument \"_id\". Expected: a role "
        "id: a non-empty string not starting with '_'",
        "gateway.yaml:7: security.roles.sloppy.controllers.auth.actions.login: Invalid rights "
        "for role \"sloppy\" (path: \"controllers.auth.actions.login\"): expected true or false",
        "gateway.yaml:8: security.roles.bare: Invalid rights for role \"bare\" "
        "(path: \"controllers\"): expected {controllers: {<name>: {actions: {<name>: "
        "true|false}}}}",
        "gateway.yaml:11: security.roles.extra.controllers.auth.action: Invalid rights for role "
        "\"extra\" (path: \"controllers.auth.action\"): unexpected key(s) action",
    ], found


def test_users_as_the_store_and_the_strategies_check_them(tmp_path):
    found = issues(tmp_path, """\
        auth:
          strategies:
            local: {}
            corp:
              oauth2: {server_metadata_url: "https://id.example/.well-known/x", client_id: gw,
                       profiles: [reader]}
        security:
          profiles:
            readers: {policies: [{roleId: default}]}
          users:
            bob:
              profileId: [readers]
              content: {joined: 2024-01-02}
              credentials:
                locl: {username: bob, password: bob-password}
                corp: {sub: "42"}
            carol:
              credentials:
                local: {username: dave, password: carol-password}
                apikey: {key: whatever}
            dave:
              profileIds: readers
              credentials: {local: {username: dave, password: dave-password}}
            "-1": {}
            erin: just a string
        """)
    assert found == [
        "gateway.yaml:6: auth.strategies.corp.oauth2.profiles[0]: Profile \"reader\" not "
        "found. (did you mean 'readers'?)",
        "gateway.yaml:12: security.users.bob.profileId: unknown key 'profileId' "
        "(did you mean 'profileIds'?)",
        "gateway.yaml:13: security.users.bob.content: Argument \"content\" is invalid "
        "(expected: a JSON-serializable object (Object of type date is not JSON "
        "serializable))",
        "gateway.yaml:15: security.users.bob.credentials.locl: Unknown authentication "
        "strategy \"locl\" (did you mean 'local'?)",
        "gateway.yaml:16: security.users.bob.credentials.corp: Credentials rejected: corp "
        "credentials come from the provider: log in with it",
        "gateway.yaml:20: security.users.carol.credentials.apikey: Unknown authentication "
        "strategy \"apikey\" (declared: local, corp)",
        "gateway.yaml:22: security.users.dave.profileIds: User \"dave\" needs at least one "
        "profile.",
        "gateway.yaml:23: security.users.dave.credentials.local.username: Login \"dave\" is "
        "already used.",
        "gateway.yaml:24: security.users.-1: Invalid argument \"_id\". Expected: any id but "
        "-1 (anonymous)",
        "gateway.yaml:25: security.users.erin: expected a mapping, got 'just a string'",
    ], found


def test_a_valid_section_passes_and_plugin_strategies_are_left_to_the_start(tmp_path):
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent(f"""\
        security:
          roles:
            anonymous: {ANONYMOUS_ROLE}
            reader: {{controllers: {{"rec/api": {{actions: {{echo: true}}}}}}}}
          profiles:
            readers: {{policies: [{{roleId: reader}}, {{roleId: default}}], rateLimit: 5}}
            admins: {{policies: [{{roleId: admin}}]}}
          users:
            plain: {{}}
            alice:
              profileIds: [readers, default]
              content: {{name: Alice}}
              credentials:
                local: {{username: alice, password: alice-password}}
                apikey: {{key: checked by the plugin at start}}
        plugins:
          rec:
            module: {REC}
            controllers:
              api: {{echo: echo}}
          apikeys:
            module: handlers.apikeys:ApiKeyStrategy
            strategies:
              apikey:
                methods: {{exists: exists, create: create, update: update, delete: delete,
                          validate: validate, verify: verify}}
        """))
    config = load_config(tmp_path / "gateway.yaml", env={})
    assert Gateway.build(config).warnings == []


def test_the_api_and_check_give_one_message(tmp_path):
    """The same function refuses a profile sent to the API and declared in the file."""
    from sanic_gateway import errors
    from sanic_gateway.security.rights import check_profile
    found = issues(tmp_path, "security:\n  profiles:\n    p: {policies: [], rateLimit: 1}\n")
    with pytest.raises(errors.BadRequestError) as caught:
        check_profile("p", {"policies": [], "rateLimit": 1})
    assert found == [f"gateway.yaml:3: security.profiles.p.policies: {caught.value.message}"]


# -- hooks and pipes given as a list --------------------------------------------------------------

def test_a_list_of_hook_functions_names_the_item_and_its_line(tmp_path):
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent(f"""\
        plugins:
          rec:
            module: {REC}
            hooks:
              "request:onSuccess": [trace, trcae]
              "request:onError": trcae
              "request:afterExecution":
                - trace
                - tally
            pipes:
              "server:beforeNow": [add_a]
              "server:afterNow": [add_b, add_bb]
        """))
    done = cli("check", cwd=tmp_path, env=ON_PATH)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    # nothing close to 'tally': the plugin's functions are listed instead
    assert lines[2].startswith(
        "gateway.yaml:9: plugins.rec.hooks.request:afterExecution[1]: no function 'tally' in "
        f"{REC} (its functions: add_a, add_b, add_sync, ")
    assert "did you mean" not in lines[2]
    lines[2] = "tally"
    assert lines == [
        "gateway.yaml:5: plugins.rec.hooks.request:onSuccess[1]: no function 'trcae' in "
        f"{REC} (did you mean 'trace'?)",
        f"gateway.yaml:6: plugins.rec.hooks.request:onError: no function 'trcae' in {REC} "
        "(did you mean 'trace'?)",
        "tally",
        "gateway.yaml:12: plugins.rec.pipes.server:afterNow[1]: no function 'add_bb' in "
        f"{REC} (did you mean 'add_b'?)",
        "4 error(s) in gateway.yaml",
    ]


# -- a closed gateway ---------------------------------------------------------------------------

UNPROFILED = """
    plain:
      credentials: {local: {username: plain, password: plain-password}}
"""


async def test_on_a_closed_gateway_a_user_without_profile_cannot_touch_security(serve):
    served = await serve(closed_yaml(users=UNPROFILED))
    client = served.client
    plain = bearer(await login(client, "plain", "plain-password"))
    me = (await client.get("/_me", headers=plain)).json()["result"]
    assert me["_source"]["profileIds"] == ["default"]
    denied(await client.post("/users/evil/_create", headers=plain, json={
        "content": {"profileIds": ["admin"]},
        "credentials": {"local": {"username": "evil", "password": "evil-password"}}}),
        403, "security.rights.forbidden")
    denied(await client.put("/roles/anonymous/_update", headers=plain,
                            json={"controllers": {"*": {"actions": {"*": True}}}}),
           403, "security.rights.forbidden")
    denied(await client.get("/users/admin", headers=plain), 403, "security.rights.forbidden")
    # what Kuzzle's restricted `default` keeps: their own account
    assert (await client.get("/_me/_rights", headers=plain)).status_code == 200
    assert (await client.post("/_refreshToken", headers=plain)).status_code == 200
    admin = bearer(await login(client, "admin", "admin-password"))
    role = (await client.get("/roles/default", headers=admin)).json()["result"]["_source"]
    assert set(role["controllers"]) == {"auth", "server"}


async def test_a_declared_default_role_is_kept(serve):
    served = await serve(closed_yaml(users=UNPROFILED, roles="""
    default: {controllers: {auth: {actions: {"*": true}}, "rec/api": {actions: {echo: true}}}}
"""))
    plain = bearer(await login(served.client, "plain", "plain-password"))
    assert (await served.client.post("/_/rec/echo", headers=plain, json={})).status_code == 200
    denied(await served.client.get("/users/admin", headers=plain), 403,
           "security.rights.forbidden")


async def test_an_open_gateway_keeps_an_open_default_role(serve, caplog):
    caplog.set_level(logging.WARNING, "sanic_gateway.security")
    opened = await serve("limits: {login_attempts_per_second: 100}\n")
    assert "anonymous users may call every action" in caplog.text
    role = (await opened.client.get("/roles/default")).json()["result"]["_source"]
    assert role == {"controllers": {"*": {"actions": {"*": True}}}}


async def test_a_default_role_changed_through_the_api_is_not_replaced(serve):
    first = await serve(closed_yaml(users=UNPROFILED))
    admin = bearer(await login(first.client, "admin", "admin-password"))
    chosen = {"controllers": {"auth": {"actions": {"*": True}}}}
    r = await first.client.put("/roles/default", headers=admin, json=chosen)
    assert r.status_code == 200, r.text
    second = await serve(closed_yaml(users=UNPROFILED))
    admin = bearer(await login(second.client, "admin", "admin-password"))
    role = (await second.client.get("/roles/default", headers=admin)).json()["result"]
    assert role["_source"] == chosen


async def test_the_start_warns_about_open_builtin_roles_given_to_other_profiles(serve, caplog):
    caplog.set_level(logging.WARNING, "sanic_gateway.security")
    await serve(closed_yaml(profiles="""
    helpers: {policies: [{roleId: admin}]}
""", roles="""
    default: {controllers: {"*": {actions: {"*": true}}}}
"""))
    text = caplog.text
    assert ("profile 'helpers' uses the built-in role 'admin', which allows every action, "
            "security included") in text
    assert "profile 'default' uses the built-in role 'default'" in text
    assert "profile 'admin'" not in text
    assert "anonymous users may call every action" not in text


# -- plugin controllers on a closed gateway -------------------------------------------------------

def test_check_warns_about_a_plugin_controller_no_role_grants(tmp_path):
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent(f"""\
        security:
          roles:
            anonymous: {ANONYMOUS_ROLE}
            granter: {{controllers: {{"granted/api": {{actions: {{"*": true}}}}}}}}
            denier: {{controllers: {{"rec/api": {{actions: {{echo: false}}}}}}}}
        plugins:
          rec:
            module: {REC}
            controllers:
              api: {{echo: echo}}
              other: {{echo: echo}}
          granted:
            module: {REC}
            controllers:
              api: {{echo: echo}}
        """))
    done = cli("check", cwd=tmp_path, env=ON_PATH)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stdout.splitlines() if line.startswith("warning:")]
    message = ("no declared role grants {!r} and the gateway is closed (security.roles."
               "anonymous is declared): only admins may call it; grant it in a role under "
               "security.roles")
    assert warnings == [
        f"warning: gateway.yaml:10: plugins.rec.controllers.api: {message.format('rec/api')}",
        f"warning: gateway.yaml:11: plugins.rec.controllers.other: "
        f"{message.format('rec/other')}",
    ]


async def test_run_warns_about_a_plugin_controller_no_role_grants(serve, caplog):
    caplog.set_level(logging.WARNING, "sanic_gateway.security")
    served = await serve(closed_yaml(plugins=f"""
  lonely:
    module: {REC}
    controllers:
      api: {{echo: echo}}
"""))
    assert served.gateway.warnings  # what check prints
    assert ("plugin controller 'lonely/api': no role grants it and the gateway is closed"
            in caplog.text)
    assert "'rec/api'" not in caplog.text  # alice's role grants it


async def test_a_plugin_strategy_refusing_declared_credentials_stops_the_start(tmp_path):
    """Left to the start (the plugin's validate needs its init): the entry's line, then."""
    from sanic_gateway.gateway import StartError

    (tmp_path / "gateway.yaml").write_text(textwrap.dedent("""\
        storage: sqlite:///./gw.db
        security:
          users:
            alice:
              credentials:
                apikey: {key: short}
        plugins:
          apikeys:
            module: handlers.apikeys:ApiKeyStrategy
            strategies:
              apikey:
                methods: {exists: exists, create: create, update: update, delete: delete,
                          validate: validate, verify: verify}
        """))
    gateway = Gateway.build(load_config(tmp_path / "gateway.yaml", env={}))
    with pytest.raises(StartError) as caught:
        await gateway.start()
    assert str(caught.value).replace(f"{tmp_path}/", "") == (
        "gateway.yaml:6: security.users.alice.credentials.apikey: an API key is a string of "
        "at least 24 characters")
    assert gateway.storage is None  # closed again
