"""Local usernames through HTTP: unique under concurrency, compared after NFKC and case
folding, invisible characters refused, nothing told about other accounts beyond Kuzzle's
"Login ... is already used"; and user creation all or nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import textwrap
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.security_helpers import bearer, closed_yaml, denied, login
from tests.test_storage import PG_URL


@pytest.fixture(params=["sqlite", "postgresql"])
async def storage_line(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The `storage:` line of gateway.yaml: the default SQLite file, or a fresh PostgreSQL
    schema (dropped after)."""
    if request.param == "sqlite":
        yield ""
        return
    schema = f"gw_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {exc}")
    yield f"storage: {PG_URL}?schema={schema}"
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


def create_user(kuid: str, username: str, password: str = "a-password") -> dict:
    return {"content": {"profileIds": ["readers"]},
            "credentials": {"local": {"username": username, "password": password}}}


async def test_concurrent_creations_with_one_username_make_one_user(serve, storage_line):
    served = await serve(closed_yaml(storage=storage_line))
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    responses = await asyncio.gather(*(
        client.post(f"/users/twin{i}/_create", headers=admin,
                    json=create_user(f"twin{i}", "twin", f"password-{i}"))
        for i in range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 9, [r.text for r in responses]
    for r in responses:
        if r.status_code == 412:
            denied(r, 412, "security.credentials.username_taken")
    winner = next(i for i, r in enumerate(responses) if r.status_code == 200)
    # the losers were not created at all: their ids stay free
    for i in range(10):
        r = await client.get(f"/users/twin{i}", headers=admin)
        assert r.status_code == (200 if i == winner else 404), r.text
    assert (await client.post("/_login/local", json={
        "username": "twin", "password": f"password-{winner}"})).json()["result"]["_id"] \
        == f"twin{winner}"


async def test_concurrent_renames_to_one_username_one_wins(serve, storage_line):
    served = await serve(closed_yaml(storage=storage_line, users="""
    bob:
      profileIds: [readers]
      credentials: {local: {username: bob, password: bob-password}}
"""))
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))
    bob = bearer(await login(client, "bob", "bob-password"))
    responses = await asyncio.gather(*(
        client.put("/_me/credentials/local/_update", headers=who, json={"username": "Carol"})
        for who in (alice, bob)))
    assert sorted(r.status_code for r in responses) == [200, 412], [r.text for r in responses]
    winner = "alice" if responses[0].status_code == 200 else "bob"
    password = f"{winner}-password"
    assert (await client.post("/_login/local", json={
        "username": "carol", "password": password})).json()["result"]["_id"] == winner
    # renaming yourself to a taken username, one at a time: refused as well
    loser = bob if winner == "alice" else alice
    denied(await client.put("/_me/credentials/local/_update", headers=loser,
                            json={"username": "CAROL"}), 412,
           "security.credentials.username_taken")


async def test_usernames_are_compared_after_nfkc_and_case_folding(serve, storage_line):
    served = await serve(closed_yaml(storage=storage_line))
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    r = await client.post("/users/bob/_create", headers=admin,
                          json=create_user("bob", "Bob", "bob-password"))
    assert r.status_code == 200, r.text
    for other in ("bob", "BOB", "\uff42\uff4f\uff42", "\uff22ob"):  # fullwidth forms
        denied(await client.post("/users/bob2/_create", headers=admin,
                                 json=create_user("bob2", other)),
               412, "security.credentials.username_taken")
    for form in ("Bob", "bob", "BOB", "\uff42\uff4f\uff42"):
        assert await login(client, form, "bob-password")
    # the stored form is the one given at creation
    assert (await client.get("/credentials/local/bob", headers=admin)).json()["result"] == {
        "username": "Bob", "kuid": "bob"}
    got = (await client.get("/credentials/local/BOB/_byId", headers=admin)).json()["result"]
    assert got == {"username": "Bob", "kuid": "bob"}
    # changing the case of one's own username is not a conflict
    bob = bearer(await login(client, "bob", "bob-password"))
    r = await client.put("/_me/credentials/local/_update", headers=bob, json={"username": "BOB"})
    assert r.status_code == 200 and r.json()["result"]["username"] == "BOB", r.text
    # "ß" folds to "ss": one account too
    r = await client.post("/users/strasse/_create", headers=admin,
                          json=create_user("strasse", "Stra\u00dfe"))
    assert r.status_code == 200, r.text
    denied(await client.post("/users/strasse2/_create", headers=admin,
                             json=create_user("strasse2", "STRASSE")),
           412, "security.credentials.username_taken")


@pytest.mark.parametrize("username", [
    "bob\u200b",            # zero-width space
    "\u202eadmin",          # right-to-left override
    "ad\u2066min\u2069",    # bidi isolates
    "bo\u200db",            # zero-width joiner
    "bob\u0007",            # a control character
    "bob\ufeff",            # byte order mark
    "\u3164bob",            # Hangul filler (invisible)
    "bob\u2028",            # line separator
    " bob",                 # surrounding spaces
])
async def test_invisible_and_bidi_characters_are_refused(serve, username):
    served = await serve(closed_yaml())
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    r = await client.post("/users/sneaky/_create", headers=admin,
                          json=create_user("sneaky", username))
    denied(r, 400, "security.credentials.invalid_username")
    denied(await client.get("/users/sneaky", headers=admin), 404, "security.user.not_found")
    alice = bearer(await login(client, "alice", "alice-password"))
    for call in (client.put("/_me/credentials/local/_update", headers=alice,
                            json={"username": username}),
                 client.post("/_me/credentials/local/_validate", headers=alice,
                             json={"username": username})):
        denied(await call, 400, "security.credentials.invalid_username")
    # a login with such a name is a failed login like any other
    denied(await client.post("/_login/local", json={"username": username, "password": "x"}),
           401, "plugin.strategy.missing_user")


async def test_a_taken_username_tells_no_more_than_kuzzle(serve, storage_line):
    """Kuzzle's local strategy answers 412 'Login "x" is already used.' to validate, create
    and update: we say exactly that, in the asker's own spelling, whichever path finds it (the
    early check or the storage's unique index), never whose account it is."""
    served = await serve(closed_yaml(storage=storage_line, users="""
    u-7f3a:
      profileIds: [readers]
      credentials: {local: {username: Holder, password: holder-password}}
"""))
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))
    answers = [
        await client.post("/_me/credentials/local/_validate", headers=alice,
                          json={"username": "HOLDER"}),
        await client.put("/_me/credentials/local/_update", headers=alice,
                         json={"username": "HOLDER"}),
    ]
    for r in answers:
        denied(r, 412, "security.credentials.username_taken")
        error = r.json()["error"]
        assert error["message"] == 'Login "HOLDER" is already used.'
        assert error["props"] == ["HOLDER"]
        assert "u-7f3a" not in r.text and "Holder" not in r.text
    # a free username validates, and alice is unchanged by the refused update
    r = await client.post("/_me/credentials/local/_validate", headers=alice,
                          json={"username": "someone-new"})
    assert r.json()["result"] is True
    assert await login(client, "alice", "alice-password")


FAILING_PLUGIN = """
    class Strategies:
        '''"elsewhere" keeps credentials in memory (another store); "stored" in the plugin's
        storage; "failing" refuses at create, after validate accepted.'''
        async def init(self, config, context):
            self.context = context
            self.elsewhere = {}
            self.deleted = []

        # elsewhere
        async def exists(self, request, kuid):
            return kuid in self.elsewhere

        async def create(self, request, credentials, kuid):
            self.elsewhere[kuid] = credentials["key"]
            return {}

        async def delete(self, request, kuid):
            self.deleted.append(kuid)
            del self.elsewhere[kuid]

        async def validate(self, request, credentials, kuid, is_update):
            return True

        async def verify(self, request, **credentials):
            return {"message": "no"}

        async def update(self, request, credentials, kuid):
            return {}

        # stored (the plugin's own storage)
        async def stored_exists(self, request, kuid):
            return await self.context.accessors.storage("keys").exists(kuid)

        async def stored_create(self, request, credentials, kuid):
            await self.context.accessors.storage("keys").create({"k": 1}, id=kuid)
            return {}

        async def stored_delete(self, request, kuid):
            await self.context.accessors.storage("keys").delete(kuid)

        # failing
        async def fail(self, request, credentials, kuid):
            raise self.context.errors.BadRequestError("refused at create",
                                                      id="security.credentials.rejected")

        # undeletable
        async def always(self, request, kuid):
            return True

        async def refuse_delete(self, request, kuid):
            raise self.context.errors.BadRequestError("cannot delete",
                                                      id="api.assert.bad_request")

        async def report(self, request):
            return {"elsewhere": sorted(self.elsewhere), "deleted": self.deleted,
                    "stored": (await self.context.accessors.storage("keys").search())["total"]}
"""


def failing_plugins(module: str) -> str:
    common = "validate: validate, verify: verify, update: update"
    return f"""
  strats:
    module: {module}:Strategies
    strategies:
      elsewhere:
        methods: {{exists: exists, create: create, delete: delete, {common}}}
      stored:
        methods: {{exists: stored_exists, create: stored_create, delete: stored_delete, {common}}}
      failing:
        methods: {{exists: exists, create: fail, delete: delete, {common}}}
      undeletable:
        methods: {{exists: always, create: create, delete: refuse_delete, {common}}}
    controllers:
      t: {{report: report}}
"""


async def test_a_failed_credentials_step_creates_nothing(serve, storage_line):
    module = f"strats_{uuid.uuid4().hex[:8]}"
    served = await serve(closed_yaml(storage=storage_line, plugins=failing_plugins(module)),
                         files={f"{module}.py": FAILING_PLUGIN})
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    r = await client.post("/users/dave/_create", headers=admin, json={
        "content": {"profileIds": ["readers"]},
        "credentials": {"local": {"username": "dave", "password": "dave-password"},
                        "stored": {}, "elsewhere": {"key": "k"}, "failing": {}}})
    denied(r, 400, "security.credentials.rejected")
    denied(await client.get("/users/dave", headers=admin), 404, "security.user.not_found")
    # the transaction took back the user, the local credentials and the plugin's stored ones;
    # the strategy storing elsewhere was asked to delete its own
    report = (await client.post("/_query", json={
        "controller": "strats/t", "action": "report"}, headers=admin)).json()["result"]
    assert report == {"elsewhere": [], "deleted": ["dave"], "stored": 0}
    denied(await client.post("/_login/local", json={
        "username": "dave", "password": "dave-password"}), 401, "plugin.strategy.missing_user")
    # and the id and username are free for a creation that works
    r = await client.post("/users/dave/_create", headers=admin, json={
        "content": {"profileIds": ["readers"]},
        "credentials": {"local": {"username": "dave", "password": "dave-password"},
                        "stored": {}}})
    assert r.status_code == 200, r.text
    assert await login(client, "dave", "dave-password")


async def test_a_database_of_an_earlier_version_opens_and_migrates(serve, tmp_path, caplog):
    """Credentials written before username keys existed: each gets its key at start; names
    that are now one account are logged, the oldest keeps the name, the start goes on."""
    from sanic_gateway.security.passwords import HASHER
    from sanic_gateway.storage import open_storage

    path = tmp_path / "old.db"
    old = await open_storage(f"sqlite:///{path}")
    for kuid, username in (("first", "Bob"), ("second", "bob"), ("third", "carl"),
                           ("fourth", "carl"), ("fifth", "dana")):
        await old.create("users", {"profileIds": ["readers"]}, id=kuid)
        await old.create("credentials.local", {
            "username": username, "password": HASHER.hash(f"{kuid}-password")}, id=kuid)
    await old.close()
    caplog.set_level("WARNING", logger="sanic_gateway.security")
    served = await serve(closed_yaml(storage=f"storage: sqlite:///{path}"))
    client = served.client
    warnings = [r.getMessage() for r in caplog.records if "cannot log in" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert "'second'" in warnings[0] and "'first'" in warnings[0]
    assert "'fourth'" in warnings[1] and "'third'" in warnings[1]
    assert all("password" not in w.split("cannot log in")[0] for w in warnings)
    # the oldest of each name, and everyone else, log in as before (any case now)
    for username, kuid in (("bob", "first"), ("CARL", "third"), ("Dana", "fifth")):
        r = await client.post("/_login/local", json={"username": username,
                                                     "password": f"{kuid}-password"})
        assert r.json()["result"]["_id"] == kuid, r.text
    denied(await client.post("/_login/local", json={
        "username": "bob", "password": "second-password"}), 401, "plugin.strategy.missing_user")
    # an admin gives the other one a new name: it logs in again, uniqueness holds
    admin = bearer(await login(client, "admin", "admin-password"))
    r = await client.put("/credentials/local/second/_update", headers=admin,
                         json={"username": "bob2"})
    assert r.status_code == 200, r.text
    assert await login(client, "bob2", "second-password")
    denied(await client.put("/credentials/local/fourth/_update", headers=admin,
                            json={"username": "Bob2"}), 412,
           "security.credentials.username_taken")


async def test_logins_with_unstorable_usernames_fail_like_any_other(serve):
    served = await serve(closed_yaml())
    for username in ("a\x00b", "x" * 5000):
        body = json.dumps({"username": username, "password": "p"})  # NUL as \u0000
        r = await served.client.post("/_login/local", content=body.encode(),
                                     headers={"Content-Type": "application/json"})
        denied(r, 401, "plugin.strategy.missing_user")


async def test_a_failed_deletion_deletes_nothing_kept_in_storage(serve, storage_line):
    module = f"strats_{uuid.uuid4().hex[:8]}"
    served = await serve(closed_yaml(storage=storage_line, plugins=failing_plugins(module)),
                         files={f"{module}.py": FAILING_PLUGIN})
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    r = await client.post("/users/erin/_create", headers=admin, json={
        "content": {"profileIds": ["readers"]},
        "credentials": {"local": {"username": "erin", "password": "erin-password"},
                        "stored": {}}})
    assert r.status_code == 200, r.text
    denied(await client.delete("/users/erin", headers=admin), 400, "api.assert.bad_request")
    # the user, its local and its plugin-stored credentials are all still there
    assert (await client.get("/users/erin", headers=admin)).status_code == 200
    assert await login(client, "erin", "erin-password")
    report = (await client.post("/_query", json={
        "controller": "strats/t", "action": "report"}, headers=admin)).json()["result"]
    assert report["stored"] == 1


def test_check_refuses_declared_usernames_that_are_one_account_or_invisible(tmp_path):
    from tests.test_cli import cli

    (tmp_path / "gateway.yaml").write_text(textwrap.dedent("""\
        security:
          users:
            bob:
              credentials: {local: {username: Bob, password: bob-password}}
            bob2:
              credentials: {local: {username: "\\uff42\\uff4f\\uff42", password: other}}
            eve:
              credentials: {local: {username: "ad\\u200bmin", password: eve-password}}
        """))
    done = cli("check", cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    assert ("gateway.yaml:6: security.users.bob2.credentials.local.username: Login "
            '"\uff42\uff4f\uff42" is already used.') in done.stderr, done.stderr
    assert ("gateway.yaml:8: security.users.eve.credentials.local.username: Invalid username: "
            "control, invisible or bidirectional characters are refused (U+200B ZERO WIDTH "
            "SPACE)") in done.stderr, done.stderr
